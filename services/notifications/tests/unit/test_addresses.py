"""Addresses in one canonical form, and contact data masked in stored bodies."""

from __future__ import annotations

import pytest

from notifications.deliveries import InvalidAddress, mask_contacts, normalize_address


@pytest.mark.parametrize("raw", ["0912345678", "+84912345678", "84 912 345 678", "0912.345.678"])
def test_one_phone_number_in_every_spelling_is_one_recipient(raw: str) -> None:
    assert normalize_address("sms", raw) == "+84912345678"


def test_email_addresses_compare_case_insensitively() -> None:
    assert normalize_address("email", " An.Nguyen@Example.VN ") == "an.nguyen@example.vn"


@pytest.mark.parametrize(("channel", "raw"), [("sms", "12345"), ("sms", ""), ("email", "no-at")])
def test_unusable_addresses_are_refused(channel: str, raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(channel, raw)


def test_stored_bodies_mask_contacts_but_keep_references_amounts_and_dates() -> None:
    body = (
        "Khiếu nại KN-2026-000123 (đơn DH12345678), hạn 30/11/2026 10:00, 1.500.000 đ. "
        "Gọi 0912345678 hoặc +84987654321, email an.nguyen@example.vn"
    )
    masked = mask_contacts(body)
    assert "KN-2026-000123" in masked
    assert "DH12345678" in masked
    assert "30/11/2026 10:00" in masked
    assert "1.500.000 đ" in masked
    for contact in ("0912345678", "84987654321", "an.nguyen@example.vn"):
        assert contact not in masked
