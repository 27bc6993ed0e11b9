"""The marketplace gateway: platforms connect here; order events in, case events out."""

from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]
