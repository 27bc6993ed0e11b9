"""`odr privacy purge`: each service's retention rules against its own database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select

from odr_shared.db import utcnow
from odr_shared.outbox import _OUTBOX
from odr_shared.testing import python

SERVICES = ("gateway", "complaints", "mediation", "notifications")


def migrated(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    urls = {}
    for service in SERVICES:
        url = f"sqlite:///{tmp_path / service}.db"
        urls[service] = url
        env[f"{service.upper()}_DATABASE_URL"] = url
    for service in SERVICES:
        subprocess.run(
            [python(), "-c", f"from {service}.main import migrate; migrate()"],
            env=env,
            check=True,
            capture_output=True,
        )
    return urls


def outbox_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_OUTBOX)).scalar_one())
    finally:
        engine.dispose()


def odr(urls: dict[str, str], *args: str) -> dict[str, dict[str, int]]:
    env = dict(os.environ)
    for service, url in urls.items():
        env[f"{service.upper()}_DATABASE_URL"] = url
    out = subprocess.run(
        [sys.executable, "-m", "odr_cli.main", "privacy", "purge", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["services"]  # type: ignore[no-any-return]


def test_dry_run_counts_what_would_go_and_purge_removes_only_that(tmp_path: Path) -> None:
    urls = migrated(tmp_path)
    now = utcnow()
    for i, service in enumerate(SERVICES):
        engine = create_engine(urls[service])
        with engine.begin() as conn:
            conn.execute(
                insert(_OUTBOX),
                [
                    {
                        "event_id": f"{service}-{n}",
                        "topic": "t",
                        "key": "k",
                        "event_type": "x",
                        "payload": b"{}",
                        "created_at": now - timedelta(days=30),
                        # i + 1 rows sent long ago, one sent today, one never sent
                        "published_at": (
                            now - timedelta(days=30) if n <= i else now if n == i + 1 else None
                        ),
                        "slot": 0,
                    }
                    for n in range(i + 3)
                ],
            )
        engine.dispose()
    dry = odr(urls, "--dry-run")
    assert set(dry) == set(SERVICES)
    for i, service in enumerate(SERVICES):
        assert dry[service]["outbox_sent"] == i + 1, (service, dry[service])
        assert outbox_rows(urls[service]) == i + 3
    done = odr(urls)
    for i, service in enumerate(SERVICES):
        assert done[service]["outbox_sent"] == i + 1
        assert outbox_rows(urls[service]) == 2
    again = odr(urls, "--service", "gateway", "--dry-run")
    assert list(again) == ["gateway"]
    assert again["gateway"]["outbox_sent"] == 0


def test_each_service_has_its_own_purge_command(tmp_path: Path) -> None:
    """What an operator runs in a worker pod, where the `odr` CLI is not installed."""
    urls = migrated(tmp_path)
    script = Path(sys.executable).parent / "notifications-purge"
    env = {**os.environ, "NOTIFICATIONS_DATABASE_URL": urls["notifications"]}
    out = subprocess.run(
        [str(script), "--dry-run"], env=env, capture_output=True, text=True, check=True
    ).stdout
    doc = json.loads(out)
    assert doc["service"] == "notifications"
    assert doc["dry_run"] is True
    assert {"delivery_bodies", "deliveries", "outbox_sent", "inbox"} <= set(doc["rules"])
    missing = subprocess.run(
        [str(script)],
        env={**os.environ, "NOTIFICATIONS_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0
    assert "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()
