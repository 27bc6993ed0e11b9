"""SMS length: GSM-7 vs UCS-2 segment counting and the unaccented Vietnamese fallback."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Literal

# GSM 03.38 basic character set (one septet each) and its extension table (escape + char).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets per segment (a concatenated one loses 7 to its UDH)
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units per segment

Encoding = Literal["gsm7", "ucs2"]

# Punctuation that is not GSM-7 but has an obvious GSM-7 spelling.
_ASCII_LOOKALIKES = {
    "–": "-",
    "—": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "…": "...",
    "₫": "d",
    "\u00a0": " ",
    "•": "-",
}


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def encoding_of(text: str) -> Encoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def gsm7_septets(text: str) -> int:
    return sum(2 if c in GSM7_EXTENSION else 1 for c in text)


def ucs2_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def segment_count(text: str) -> int:
    """How many SMS segments the text takes once the phone network has encoded it."""
    text = unicodedata.normalize("NFC", text)
    if not text:
        return 1
    if is_gsm7(text):
        septets = gsm7_septets(text)
        if septets <= GSM7_SINGLE:
            return 1
        # An escape pair may not straddle two segments, so fill greedily instead of dividing.
        segments, used = 1, 0
        for c in text:
            width = 2 if c in GSM7_EXTENSION else 1
            if used + width > GSM7_MULTI:
                segments, used = segments + 1, 0
            used += width
        return segments
    units = ucs2_units(text)
    return 1 if units <= UCS2_SINGLE else math.ceil(units / UCS2_MULTI)


def unaccent(text: str) -> str:
    """Vietnamese without diacritics (đ -> d), with anything else non-GSM-7 replaced."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    out = []
    for c in unicodedata.normalize("NFC", stripped):
        if c in GSM7_BASIC or c in GSM7_EXTENSION:
            out.append(c)
        else:
            out.append(_ASCII_LOOKALIKES.get(c, "?"))
    return "".join(out)


@dataclass(frozen=True)
class SmsText:
    text: str
    encoding: Encoding
    segments: int
    unaccented: bool


def fit_sms(text: str, max_segments: int = 2, *, force_unaccented: bool = False) -> SmsText:
    """The text to send: as written if it fits, else unaccented GSM-7, else cut to fit.

    Vietnamese diacritics force UCS-2 (67 characters a segment once concatenated), so a message
    that needs three UCS-2 segments usually fits two GSM-7 ones (306 characters) unaccented.
    """
    text = unicodedata.normalize("NFC", text.strip())
    if not force_unaccented and segment_count(text) <= max_segments:
        return SmsText(text, encoding_of(text), segment_count(text), unaccented=False)
    plain = unaccent(text)
    if segment_count(plain) > max_segments:
        budget = GSM7_SINGLE if max_segments == 1 else GSM7_MULTI * max_segments
        while gsm7_septets(plain) > budget - 3:
            plain = plain[:-1]
        plain = plain.rstrip() + "..."
    return SmsText(plain, "gsm7", segment_count(plain), unaccented=True)
