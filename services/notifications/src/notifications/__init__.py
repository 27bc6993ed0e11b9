"""Notifications: templates, recipient preferences, SMS and email deliveries."""

from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]
