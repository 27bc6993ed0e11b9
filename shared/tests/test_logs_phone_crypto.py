"""Personal data masking in logs, phone normalisation, encryption at rest."""

from __future__ import annotations

import io
import json
import logging

import pytest

from odr_shared.crypto import DataCipher
from odr_shared.logs import JsonFormatter, mask_email, mask_name, mask_phone, scrub
from odr_shared.phone import InvalidPhone, normalize_phone


def log_line(msg: str, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(f"t{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.warning(msg, extra=extra)
    return json.loads(stream.getvalue())  # type: ignore[no-any-return]


def test_log_lines_carry_no_phone_email_or_name_in_clear() -> None:
    doc = log_line(
        "OTP for 0912345678 and +84 987 654 321, mail an.nguyen@example.vn",
        phone="0912345678",
        buyer={"name": "Nguyễn Văn An", "email": "an@example.vn"},
        amount=1500000,
        order_code="DH123",
    )
    text = json.dumps(doc, ensure_ascii=False)
    for clear in (
        "0912345678",
        "987 654 321",
        "an.nguyen@example.vn",
        "Nguyễn Văn An",
        "an@example.vn",
    ):
        assert clear not in text
    assert doc["amount"] == 1500000  # numbers that are not personal data stay
    assert doc["order_code"] == "DH123"


def test_maskers() -> None:
    assert mask_phone("+84912345678") == "849****678"
    assert mask_email("an.nguyen@example.vn") == "a***@example.vn"
    assert mask_name("Nguyễn Văn An") == "N*** V*** A***"
    assert (
        scrub("amount 150000 dong, ref KN-2026-000123") == "amount 150000 dong, ref KN-2026-000123"
    )


@pytest.mark.parametrize(
    "raw", ["0912345678", "+84912345678", "84912345678", "091 234 5678", "0084-912-345-678"]
)
def test_vietnamese_numbers_have_one_form(raw: str) -> None:
    assert normalize_phone(raw) == "+84912345678"


@pytest.mark.parametrize("raw", ["", "12345", "abc", "09123", "+8491234567890123"])
def test_non_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


def test_cipher_round_trip_rotation_and_lookup_hash() -> None:
    old = DataCipher("old-key-material")
    token = old.encrypt("+84912345678")
    assert "912345678" not in token
    rotated = DataCipher("new-key-material,old-key-material")
    assert rotated.decrypt(token) == "+84912345678"
    assert rotated.decrypt(rotated.encrypt("x")) == "x"
    with pytest.raises(ValueError, match="decrypt"):
        DataCipher("other").decrypt(token)
    # The lookup hash is stable across rotation (keyed on the oldest key) and keyed.
    assert rotated.lookup_hash("+84912345678") == old.lookup_hash("+84912345678")
    assert DataCipher("other").lookup_hash("+84912345678") != old.lookup_hash("+84912345678")
