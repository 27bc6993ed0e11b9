"""End-to-end journeys; their shared helpers (journey_support) import as a top-level module."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
