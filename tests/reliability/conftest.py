"""Reliability suite fixtures (the stack, the results file) from reliability_kit."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from reliability_kit import _write_results, rstack

__all__ = ["_write_results", "rstack"]
