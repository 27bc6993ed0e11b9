"""Mediation: neutrals, routing, proposals, arbitration, the neutrals' dashboard."""

from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]
