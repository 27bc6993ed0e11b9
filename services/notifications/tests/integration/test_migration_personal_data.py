"""Migration 0003 on data: clear display bodies become ciphertext (and back on downgrade);
opt-out links get their last use. On SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, text

from notifications import SERVICE_ROOT
from notifications.settings import NotificationsSettings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, utcnow
from odr_shared.migrate import downgrade, upgrade

BODY = "[KN-2026-000123] Khiếu nại\n\nXin chào Nguyễn Văn An, người bán đã đề nghị hoàn tiền."


def test_existing_bodies_are_encrypted_and_restored_on_downgrade(database_url: str) -> None:
    cipher = DataCipher(NotificationsSettings().data_encryption_key)
    upgrade(SERVICE_ROOT, database_url, "0002")
    engine = make_engine(database_url)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO deliveries (channel, recipient_hash, recipient_enc, recipient_masked,"
                " template, language, category, urgent, content_enc, body, status, attempts,"
                " event_id, event_type, source_topic, created_at)"
                " VALUES ('email', 'h1', :r, 'a***@example.vn', 'offer_made', 'vi', 'case',"
                " :f, :c, :b, 'sent', 1, 'ev-1', 'case.offer_made', 'cases.events', :t)"
            ),
            {
                "r": cipher.encrypt("an.nguyen@example.vn"),
                "f": False,
                "c": cipher.encrypt('{"text": "x"}'),
                "b": BODY,
                "t": now,
            },
        )
        conn.execute(
            text(
                "INSERT INTO unsubscribe_links (token, recipient_hash, created_at)"
                " VALUES ('tok12345', 'h1', :t)"
            ),
            {"t": now},
        )
    engine.dispose()

    upgrade(SERVICE_ROOT, database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("deliveries")}
        [stored] = conn.execute(text("SELECT body_enc FROM deliveries")).scalars()
        rows = conn.execute(text("SELECT * FROM deliveries")).all()
        [(created, last_used)] = conn.execute(
            text("SELECT created_at, last_used_at FROM unsubscribe_links")
        ).all()
    engine.dispose()
    assert "body" not in columns
    assert cipher.decrypt(stored) == BODY
    assert "Nguyễn" not in repr(rows)
    assert last_used == created

    # An erased delivery (nothing left) survives the way down too.
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO deliveries (channel, recipient_hash, recipient_masked, template,"
                " language, category, urgent, status, attempts, event_id, event_type,"
                " source_topic, created_at, erased_at)"
                " VALUES ('sms', 'erased-9', '', 'otp', 'vi', 'otp', :f, 'cancelled', 0,"
                " 'ev-2', 'notification.send', 'notifications.commands', :t, :t)"
            ),
            {"f": True, "t": now},
        )
    engine.dispose()
    downgrade(SERVICE_ROOT, database_url, "0002")
    engine = make_engine(database_url)
    with engine.connect() as conn:
        bodies = dict(conn.execute(text("SELECT event_id, body FROM deliveries")).all())
    engine.dispose()
    assert bodies == {"ev-1": BODY, "ev-2": ""}
