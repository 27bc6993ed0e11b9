"""Migration 0003 names the buyers of the orders and cases already stored as data subjects."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from complaints import SERVICE_ROOT
from complaints.deps import subject_function
from complaints.settings import ComplaintsSettings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, utcnow
from odr_shared.migrate import upgrade


def test_0003_fills_in_the_subject_of_stored_orders_and_their_cases(
    database_url: str, tmp_path: Path
) -> None:
    upgrade(SERVICE_ROOT, database_url, "0002")
    settings = ComplaintsSettings(database_url=database_url, environment="test")
    cipher = DataCipher(settings.data_encryption_key)
    now = utcnow()
    engine = make_engine(database_url)
    with engine.begin() as conn:
        # M3: a marketplace that masks phones; the migration must not stop on it.
        for code, phone in (("M1", "+84912345678"), ("M2", "+84987654321"), ("M3", "09******78")):
            conn.execute(
                text(
                    "INSERT INTO orders (id, platform_id, order_code, status, status_at,"
                    " buyer_name_enc, buyer_phone_enc, buyer_phone_hash, seller_id, seller_name,"
                    " items, total_amount, currency, first_seen_at, updated_at) VALUES (:id, 'p',"
                    " :code, 'paid', :now, :name, :phone, 'h', 's', 'S', '[]', 1, 'VND', :now, :now)"
                ),
                {
                    "id": f"p:{code}",
                    "code": code,
                    "now": now,
                    "name": cipher.encrypt("Buyer"),
                    "phone": cipher.encrypt(phone),
                },
            )
        conn.execute(
            text(
                "INSERT INTO cases (id, reference, order_id, open_order_id, platform_id,"
                " order_code, seller_id, category, description, desired_outcome, currency,"
                " language, status, opened_at, merchant_response_due_at, offer_rejected,"
                " updated_at) VALUES ('c1', 'KN-1', 'p:M1', 'p:M1', 'p', 'M1', 's', 'damaged',"
                " 'd', 'refund', 'VND', 'vi', 'awaiting_merchant', :now, :now, false, :now)"
            ),
            {"now": now},
        )
    engine.dispose()
    upgrade(SERVICE_ROOT, database_url)
    subject_of = subject_function(settings)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        orders = dict(conn.execute(text("SELECT id, subject_id FROM orders")).all())
        cases = dict(conn.execute(text("SELECT id, subject_id FROM cases")).all())
    engine.dispose()
    assert orders == {
        "p:M1": subject_of("0912345678"),
        "p:M2": subject_of("0987654321"),
        "p:M3": subject_of("09******78"),
    }
    assert cases == {"c1": orders["p:M1"]}
