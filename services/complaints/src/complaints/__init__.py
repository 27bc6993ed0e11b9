"""Complaints: the buyer's side: orders, one-time codes, cases and their deadlines, the portal."""

from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]
