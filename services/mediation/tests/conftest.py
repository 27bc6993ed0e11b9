"""Mediation fixtures; the helpers and fixtures themselves live in mediation_testkit."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from mediation_testkit import add_neutral, client, sessions, settings

__all__ = ["add_neutral", "client", "sessions", "settings"]
