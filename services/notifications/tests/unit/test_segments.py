"""SMS segment counting (GSM-7 vs UCS-2) and the unaccented Vietnamese fallback."""

from __future__ import annotations

import pytest

from notifications.segments import encoding_of, fit_sms, segment_count, unaccent


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm7_segments_are_160_then_153_septets(length: int, segments: int) -> None:
    assert encoding_of("a" * length) == "gsm7"
    assert segment_count("a" * length) == segments


def test_gsm7_extension_characters_take_two_septets() -> None:
    assert segment_count("€" * 80) == 1  # 160 septets
    assert segment_count("€" * 81) == 2
    # 306 septets fit two parts, unless an escape pair would straddle them: then it moves on.
    assert segment_count("a" * 151 + "€" + "a" * 153) == 2
    assert segment_count("a" * 152 + "€" + "a" * 152) == 3


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_segments_are_70_then_67_characters(length: int, segments: int) -> None:
    text = "ư" * length
    assert encoding_of(text) == "ucs2"
    assert segment_count(text) == segments


def test_vietnamese_diacritics_force_ucs2_but_gsm7_accents_do_not() -> None:
    assert encoding_of("Khiếu nại đã được tiếp nhận") == "ucs2"
    assert encoding_of("Ma xac thuc cua ban la 123456") == "gsm7"
    assert encoding_of("café à la carte") == "gsm7"  # é and à are in the GSM-7 table


def test_decomposed_input_is_counted_as_composed() -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "ư" * 70)
    assert segment_count(nfd) == 1


def test_unaccent_strips_every_vietnamese_diacritic_including_d_stroke() -> None:
    assert unaccent("Đặng Thị Ngọc Ánh, đơn hàng của bạn") == "Dang Thi Ngoc Anh, don hang cua ban"
    assert unaccent("Người bán đã gửi đề nghị: 150.000 ₫ “ngay”") == (
        'Nguoi ban da gui de nghi: 150.000 d "ngay"'
    )
    assert encoding_of(unaccent("ỳỷỹỵ ẰẲẴẶ ỪỬỮỰ ơ ư ă â ê ô")) == "gsm7"


def test_short_vietnamese_is_sent_with_its_diacritics() -> None:
    sms = fit_sms("ODR: Khiếu nại KN-2026-000123 đã được tiếp nhận.")
    assert sms.unaccented is False
    assert sms.encoding == "ucs2"
    assert sms.segments == 1


def test_vietnamese_over_two_ucs2_segments_falls_back_to_unaccented_gsm7() -> None:
    text = (
        "ODR: Người bán đã gửi đề nghị cho khiếu nại KN-2026-000123: 1.500.000 đ. "
        "Bạn có thể chấp nhận hoặc từ chối đề nghị này tại https://odr.example.vn/cases"
    )
    assert len(text) > 134
    assert segment_count(text) == 3
    sms = fit_sms(text)
    assert sms.unaccented is True
    assert sms.encoding == "gsm7"
    assert sms.segments <= 2
    assert sms.text.startswith("ODR: Nguoi ban da gui de nghi cho khieu nai KN-2026-000123")
    assert "1.500.000 d." in sms.text


def test_text_too_long_even_unaccented_is_cut_to_two_segments() -> None:
    sms = fit_sms("Khiếu nại " * 60)
    assert sms.segments == 2
    assert sms.text.endswith("...")
    assert len(sms.text) <= 306


def test_forced_unaccented_variant_for_recipients_who_want_it() -> None:
    sms = fit_sms("Mã của bạn", force_unaccented=True)
    assert sms.text == "Ma cua ban"
    assert sms.encoding == "gsm7"
