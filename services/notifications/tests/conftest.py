"""Notifications fixtures; the servers, clock and event builders live in notifications_testkit."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from notifications_testkit import clock, db_url, harness, mailbox, sms_provider

__all__ = ["clock", "db_url", "harness", "mailbox", "sms_provider"]
