"""Vietnamese phone numbers in one canonical E.164 form (0912... and +84912... are one person)."""

from __future__ import annotations

import re


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    """Return +84XXXXXXXXX for Vietnamese numbers, +<digits> for other international numbers."""
    s = re.sub(r"[\s.\-()]", "", raw or "")
    if s.startswith("00"):
        s = "+" + s[2:]
    if s.startswith("+"):
        digits = s[1:]
        if not digits.isdigit() or not 8 <= len(digits) <= 15:
            raise InvalidPhone("not a phone number")
        if digits.startswith("84"):
            return _vn("+84", digits[2:])
        return "+" + digits
    if not s.isdigit():
        raise InvalidPhone("not a phone number")
    if s.startswith("84") and len(s) in (11, 12):
        return _vn("+84", s[2:])
    if s.startswith("0"):
        return _vn("+84", s[1:])
    raise InvalidPhone("a Vietnamese number starts with 0 or +84")


def _vn(prefix: str, national: str) -> str:
    national = national.lstrip("0")
    # Mobile numbers have 9 digits after the country code since the 2018 renumbering;
    # landlines (2x area codes) have 10.
    if not (len(national) == 9 or (len(national) == 10 and national.startswith("2"))):
        raise InvalidPhone("a Vietnamese number has 9 digits after 0 or +84")
    return prefix + national
