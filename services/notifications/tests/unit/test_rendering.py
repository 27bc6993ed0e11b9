"""Templates in Vietnamese and English: SMS within two segments, email as text and HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifications.rendering import TEMPLATE_DIR, Renderer, TemplateMissing, redacted
from notifications.segments import segment_count

RENDERER = Renderer(portal_url="https://odr.example.vn", dashboard_url="https://odr.example.vn/d")
PARAMS = {
    "code": "482913",
    "ttl_minutes": 5,
    "reference": "KN-2026-000123",
    "order_code": "DH12345678",
    "name": "Nguyễn Văn An",
    "due_at": datetime(2026, 12, 2, 3, 0, tzinfo=UTC),
    "status": "shipped",
    "seller": "Cửa hàng Minh Anh",
    "offer_amount": 1500000,
    "proposal_amount": 1200000,
    "decision_amount": 1000000,
    "terms": "Hoàn tiền trong 3 ngày",
    "neutral_role": "mediator",
}
TEMPLATES = sorted(p.stem for p in (TEMPLATE_DIR / "vi").glob("*.j2"))
SMS_TEMPLATES = [t for t in TEMPLATES if t != "neutral_assigned"]


def test_every_template_exists_in_both_languages() -> None:
    assert sorted(p.stem for p in (TEMPLATE_DIR / "en").glob("*.j2")) == TEMPLATES
    assert set(TEMPLATES) >= {
        "otp",
        "order_status",
        "case_opened",
        "offer_made",
        "deadline_missed",
        "case_escalated",
        "mediator_assigned",
        "neutral_assigned",
        "proposal_made",
        "case_decided",
        "case_resolved",
        "case_withdrawn",
    }


@pytest.mark.parametrize("language", ["vi", "en"])
@pytest.mark.parametrize("template", SMS_TEMPLATES)
def test_every_sms_fits_two_segments(template: str, language: str) -> None:
    sms = RENDERER.render(template, language, "sms", PARAMS)
    assert sms.text.startswith("ODR:")
    assert segment_count(sms.text) <= 2
    assert sms.subject is None
    assert sms.html is None


@pytest.mark.parametrize("language", ["vi", "en"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_email_has_subject_plain_text_and_html(template: str, language: str) -> None:
    email = RENDERER.render(template, language, "email", PARAMS)
    assert email.subject
    assert "\n" not in email.subject
    assert email.text
    assert "<p>" not in email.text
    assert email.html is not None
    assert email.html.startswith("<!doctype html>")
    assert f'lang="{language}"' in email.html


def test_language_chooses_the_template() -> None:
    vi = RENDERER.render("case_opened", "vi", "email", PARAMS)
    en = RENDERER.render("case_opened", "en", "email", PARAMS)
    assert vi.subject == "[KN-2026-000123] Khiếu nại của bạn đã được tiếp nhận"
    assert en.subject == "[KN-2026-000123] We have received your complaint"
    assert "Xin chào Nguyễn Văn An" in vi.text
    assert "Hello Nguyễn Văn An" in en.text
    # Deadlines are shown in Vietnam time (03:00 UTC = 10:00 UTC+7).
    assert "02/12/2026 10:00" in vi.text
    assert "02/12/2026 10:00" in en.text


def test_unknown_language_falls_back_to_vietnamese() -> None:
    assert RENDERER.render("otp", "fr", "sms", PARAMS).text.startswith("ODR: Ma xac thuc")


def test_money_is_written_the_local_way_per_language() -> None:
    vi = RENDERER.render("offer_made", "vi", "email", PARAMS)
    en = RENDERER.render("offer_made", "en", "email", PARAMS)
    assert "1.500.000 đ" in vi.text
    assert "1,500,000 VND" in en.text


def test_otp_sms_is_one_gsm7_segment_in_both_languages() -> None:
    for language in ("vi", "en"):
        text = RENDERER.render("otp", language, "sms", PARAMS).text
        assert "482913" in text
        assert segment_count(text) == 1


def test_long_vietnamese_sms_falls_back_to_unaccented() -> None:
    params = {**PARAMS, "reference": "KN-2026-000123", "order_code": "SHOPEE-2611220001234567"}
    sms = RENDERER.render("case_opened", "vi", "sms", params)
    assert "Khieu nai KN-2026-000123" in sms.text  # unaccented: it would take 3 UCS-2 parts
    assert segment_count(sms.text) <= 2
    short = RENDERER.render("case_withdrawn", "vi", "sms", PARAMS)
    assert "Khiếu nại KN-2026-000123 đã được rút" in short.text


def test_html_escapes_what_the_event_carries() -> None:
    email = RENDERER.render("case_opened", "en", "email", {**PARAMS, "name": "<script>x</script>"})
    assert email.html is not None
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "<script>x</script>" in email.text  # plain text is not HTML


def test_neutral_template_is_email_only() -> None:
    with pytest.raises(TemplateMissing):
        RENDERER.render("neutral_assigned", "vi", "sms", PARAMS)
    email = RENDERER.render("neutral_assigned", "vi", "email", PARAMS)
    assert "hòa giải viên" in (email.subject or "")
    assert "https://odr.example.vn/d" in email.text


@pytest.mark.parametrize("name", ["nope", "../vi/otp", "_layout.html"])
def test_unknown_or_sneaky_template_names_are_refused(name: str) -> None:
    with pytest.raises(TemplateMissing):
        RENDERER.render(name, "vi", "sms", PARAMS)


def test_redacted_params_hide_the_code_at_the_same_length() -> None:
    shown = RENDERER.render("otp", "vi", "sms", redacted(PARAMS)).text
    assert "482913" not in shown
    assert "******" in shown


def test_template_files_are_utf8_and_composed(tmp_path: Path) -> None:
    import unicodedata

    for path in TEMPLATE_DIR.rglob("*.j2"):
        text = path.read_text(encoding="utf-8")
        assert unicodedata.normalize("NFC", text) == text, path
