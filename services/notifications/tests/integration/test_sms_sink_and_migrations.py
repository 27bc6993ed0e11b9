"""The local SMS sink honours Idempotency-Key like a real provider; migrations go both ways."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import create_engine, inspect

from notifications import SERVICE_ROOT
from notifications.channels.base import Message
from notifications.channels.sms_http import HttpSmsChannel
from notifications.sms_sink import make_handler
from odr_shared.migrate import downgrade, upgrade
from odr_shared.testing import free_port


def test_sms_sink_saves_each_message_once_per_idempotency_key(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), make_handler(tmp_path))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    try:
        channel = HttpSmsChannel(url, sender="ODR")
        first = channel.send(Message(to="+84912345678", text="ODR: một", reference="ref-1"))
        again = channel.send(Message(to="+84912345678", text="ODR: một", reference="ref-1"))
        other = channel.send(Message(to="+84912345678", text="ODR: hai", reference="ref-2"))
        channel.close()
        assert first.outcome == again.outcome == other.outcome == "sent"
        assert first.provider_id == again.provider_id != other.provider_id
        bad = httpx.post(url, json={"text": "no recipient"})
        assert bad.status_code == 400
    finally:
        server.shutdown()
        server.server_close()
    lines = (tmp_path / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    saved = [json.loads(line) for line in lines]
    assert [m["text"] for m in saved] == ["ODR: một", "ODR: hai"]
    assert saved[0]["sender"] == "ODR"
    # A restarted sink still knows what it has seen.
    restarted = ThreadingHTTPServer(("127.0.0.1", free_port()), make_handler(tmp_path))
    threading.Thread(target=restarted.serve_forever, daemon=True).start()
    try:
        r = httpx.post(
            f"http://127.0.0.1:{restarted.server_address[1]}/sms",
            json={"to": "+84912345678", "text": "ODR: một"},
            headers={"idempotency-key": "ref-1"},
        )
        assert r.json() == {"id": first.provider_id, "status": "duplicate"}
    finally:
        restarted.shutdown()
        restarted.server_close()
    assert len((tmp_path / "messages.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_migrations_upgrade_downgrade_and_upgrade_again(database_url: str) -> None:
    upgrade(SERVICE_ROOT, database_url)
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"deliveries", "case_contacts", "recipient_preferences", "unsubscribe_links"} <= (
            tables
        )
        downgrade(SERVICE_ROOT, database_url)
        assert "deliveries" not in set(inspect(engine).get_table_names())
        upgrade(SERVICE_ROOT, database_url)
        assert "deliveries" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
