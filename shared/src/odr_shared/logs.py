"""Structured logging that never writes a phone number, an email address or a name in clear."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Vietnamese and international phone numbers: +84 912 345 678, 0912345678, 84912345678 ...
PHONE_RE = re.compile(r"(?<![\w\-])(?:\+?\d[\d .\-()]{7,16}\d)(?![\w\-])")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# Fields whose values are personal data whatever they look like.
PERSONAL_KEYS = {
    "name",
    "buyer_name",
    "full_name",
    "recipient_name",
    "phone",
    "email",
    "recipient",
    "address",
    "buyer",
    "consumer",
    "contact",
}
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "***"
    return f"{digits[:3]}****{digits[-3:]}"


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    if not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(name: str) -> str:
    parts = [p for p in name.split() if p]
    return " ".join(p[0] + "***" for p in parts) or "***"


def _phone_sub(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    # Only mask digit runs that look like phone numbers (9-15 digits), not amounts or ids.
    if 9 <= len(digits) <= 15:
        return mask_phone(m.group(0))
    return m.group(0)


def scrub(text: str) -> str:
    """Mask emails and phone-like digit runs in free text."""
    text = EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
    return PHONE_RE.sub(_phone_sub, text)


def scrub_value(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(key, v) for v in value]
    if key.lower() in PERSONAL_KEYS and value is not None:
        if isinstance(value, str):
            if "@" in value:
                return mask_email(value)
            if sum(c.isdigit() for c in value) >= 7:
                return mask_phone(value)
            return mask_name(value)
        return "***"
    if isinstance(value, str):
        return scrub(value)
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = scrub_value(key, value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = json.loads(super().format(record))
        extra = {
            k: v for k, v in doc.items() if k not in {"ts", "level", "service", "logger", "msg"}
        }
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        return (
            f"{doc['ts'][11:23]} {doc['level']:<7} {self.service:<13} {doc['msg']} {tail}".rstrip()
        )


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "uvicorn.access", "httpx", "httpcore", "aiosmtpd", "mail.log"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for uv in ("uvicorn", "uvicorn.error"):
        logging.getLogger(uv).handlers[:] = []
        logging.getLogger(uv).propagate = True
