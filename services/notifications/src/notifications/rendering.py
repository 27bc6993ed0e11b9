"""Jinja2 templates (vi, en) rendered into an SMS text or a plain-text + HTML email."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from notifications.policy import LOCAL_TZ
from notifications.segments import fit_sms

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("vi", "en")
# Parameters that must never be stored or shown in clear (the stored copy is redacted).
SECRET_PARAMS = frozenset({"code", "unsubscribe_url"})

ORDER_STATUS_LABELS = {
    "vi": {
        "created": "đã được tạo",
        "paid": "đã thanh toán",
        "ready_to_ship": "đang chuẩn bị giao",
        "shipped": "đang được giao",
        "delivered": "đã giao thành công",
        "completed": "đã hoàn tất",
        "cancelled": "đã bị hủy",
        "return_requested": "đã được yêu cầu trả hàng",
        "returned": "đã được trả lại",
        "refunded": "đã được hoàn tiền",
    },
    "en": {
        "created": "has been created",
        "paid": "has been paid",
        "ready_to_ship": "is being prepared for shipping",
        "shipped": "has been shipped",
        "delivered": "has been delivered",
        "completed": "is complete",
        "cancelled": "has been cancelled",
        "return_requested": "has a return request",
        "returned": "has been returned",
        "refunded": "has been refunded",
    },
}
ROLE_LABELS = {
    "vi": {"mediator": "hòa giải viên", "arbitrator": "trọng tài viên"},
    "en": {"mediator": "mediator", "arbitrator": "arbitrator"},
}


class TemplateMissing(LookupError):
    """No template (or no block for the channel) for this message: it cannot be rendered."""


@dataclass(frozen=True)
class RenderedMessage:
    """What a channel sends: an SMS text, or an email subject with plain text and HTML."""

    text: str
    subject: str | None = None
    html: str | None = None


@pass_context
def vnd(context: Context, amount: object) -> str:
    """Integer đồng: 1500000 -> '1.500.000 đ' in Vietnamese, '1,500,000 VND' in English."""
    if amount is None or amount == "":
        return ""
    grouped = f"{int(str(amount)):,}"
    if context.get("lang") == "en":
        return f"{grouped} VND"  # GSM-7 friendly: the English SMS stays in 160-character parts
    return grouped.replace(",", ".") + " đ"


def local_time(value: object) -> str:
    """A UTC instant shown in Asia/Ho_Chi_Minh as dd/mm/yyyy HH:MM."""
    if value is None or value == "":
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=autoescape,  # noqa: S701 - off only for SMS and text/plain, never HTML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["vnd"] = vnd
    env.filters["local_time"] = local_time
    return env


def redacted(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with secrets replaced by asterisks of the same length."""
    return {k: "*" * len(str(v)) if k in SECRET_PARAMS else v for k, v in params.items()}


class Renderer:
    def __init__(
        self,
        *,
        portal_url: str,
        dashboard_url: str,
        sms_max_segments: int = 2,
        sms_unaccented: bool = False,
    ) -> None:
        self.portal_url = portal_url.rstrip("/")
        self.dashboard_url = dashboard_url.rstrip("/")
        self.sms_max_segments = sms_max_segments
        self.sms_unaccented = sms_unaccented
        self._plain = _environment(autoescape=False)
        self._html = _environment(autoescape=True)

    def _context(self, language: str, params: dict[str, Any]) -> dict[str, Any]:
        # Every name a template may use is defined, so StrictUndefined only catches typos.
        context: dict[str, Any] = {
            "name": None,
            "reference": None,
            "order_code": None,
            "case_id": None,
            "due_at": None,
            "reason": None,
            "terms": None,
            "outcome": None,
            "reasons": None,
            "offer_kind": None,
            "offer_amount": None,
            "proposal_amount": None,
            "decision_amount": None,
            "claimed_amount": None,
            "seller": None,
            "status": None,
            "neutral_role": "mediator",
            "unsubscribe_url": None,
        }
        context.update(params)
        context.update(
            lang=language,
            portal_url=self.portal_url,
            dashboard_url=self.dashboard_url,
            status_label=ORDER_STATUS_LABELS[language].get(str(context["status"]), "")
            if context["status"]
            else "",
            role_label=ROLE_LABELS[language].get(str(context["neutral_role"]), ""),
        )
        return context

    def _block(self, template: Template, block: str, context: dict[str, Any]) -> str:
        render = template.blocks.get(block)
        if render is None:
            raise TemplateMissing(f"template {template.name} has no {block} block")
        out = "".join(render(template.new_context(context))).strip()
        # Optional paragraphs that rendered empty leave no gap behind.
        out = re.sub(r"<p>\s*</p>\n?", "", out)
        return re.sub(r"\n{3,}", "\n\n", out)

    def _load(self, env: Environment, name: str, language: str) -> Template:
        if "/" in name or "." in name or name.startswith("_"):
            raise TemplateMissing(f"invalid template name {name!r}")
        try:
            return env.get_template(f"{language}/{name}.j2")
        except Exception as exc:
            raise TemplateMissing(f"no template {name!r} in {language}") from exc

    def render(
        self, name: str, language: str, channel: str, params: dict[str, Any]
    ) -> RenderedMessage:
        language = language if language in LANGUAGES else "vi"
        context = self._context(language, params)
        plain = self._load(self._plain, name, language)
        if channel == "sms":
            sms = fit_sms(
                self._block(plain, "sms", context),
                self.sms_max_segments,
                force_unaccented=self.sms_unaccented,
            )
            return RenderedMessage(text=sms.text)
        subject = " ".join(self._block(plain, "subject", context).split())
        text = self._block(plain, "text", context)
        html_template = self._load(self._html, name, language)
        content = self._block(html_template, "html", context)
        layout = self._html.get_template("_layout.html.j2")
        html = layout.render(lang=language, subject=subject, content=Markup(content))  # noqa: S704 - autoescaped above
        return RenderedMessage(text=text, subject=subject, html=html)


def render_page(name: str, **context: Any) -> str:
    """One of the service's own small HTML pages (autoescaped)."""
    return _PAGES.get_template(name).render(**context)


_PAGES = _environment(autoescape=True)
