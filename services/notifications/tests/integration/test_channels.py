"""The channel adapters against real servers: HTTP SMS error classes, SMTP with STARTTLS+AUTH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from notifications_testkit import Mailbox, SmsProvider

from notifications.channels.base import Message
from notifications.channels.email_smtp import SmtpEmailChannel
from notifications.channels.sms_http import HttpSmsChannel
from odr_shared.testing import free_port

SMS = Message(to="+84912345678", text="ODR: xin chào", reference="odr-ref-1")


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        ("ok", "sent"),
        ("503", "retry"),
        ("429", "retry"),
        ("timeout_before", "retry"),
        ("400", "failed"),
    ],
)
def test_sms_provider_answers_are_classified(
    sms_provider: SmsProvider, behaviour: str, outcome: str
) -> None:
    sms_provider.schedule = lambda n: behaviour
    sms_provider.hang_s = 1.0
    channel = HttpSmsChannel(sms_provider.url, api_key="k-123", sender="ODR", timeout_s=0.3)
    result = channel.send(SMS)
    channel.close()
    assert result.outcome == outcome
    assert sms_provider.authorizations == ["Bearer k-123"]
    if outcome == "sent":
        assert result.provider_id == "sms-1"
        assert sms_provider.accepted[0]["text"] == "ODR: xin chào"
        assert sms_provider.accepted[0]["sender"] == "ODR"
        assert sms_provider.accepted[0]["key"] == "odr-ref-1"
    else:
        assert result.error


def test_sms_provider_down_is_retryable() -> None:
    channel = HttpSmsChannel(f"http://127.0.0.1:{free_port()}/sms", timeout_s=0.5)
    result = channel.send(SMS)
    assert result.outcome == "retry"
    assert "transport error" in (result.error or "")


# -- SMTP ------------------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsRelay:
    def __init__(self, mailbox: Mailbox, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        self.logins: list[bytes] = []
        self.controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=self._authenticate,
            auth_require_tls=True,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append(auth_data.login)
        ok = auth_data.login == b"odr" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def relay(tmp_path: Path, mailbox: Mailbox) -> Iterator[tuple[TlsRelay, Path]]:
    cert, key = _self_signed(tmp_path)
    relay = TlsRelay(mailbox, cert, key)
    relay.controller.start()
    yield relay, cert
    relay.controller.stop()


EMAIL = Message(
    to="an.nguyen@example.vn",
    subject="[KN-2026-000123] Khiếu nại của bạn đã được tiếp nhận",
    text="Xin chào Nguyễn Văn An,\n\nKhiếu nại đã được tiếp nhận.",
    html="<!doctype html><html><body><p>Xin chào Nguyễn Văn An,</p></body></html>",
    reference="odr-abc123",
    language="vi",
)


def _channel(port: int, cert: Path, **overrides: Any) -> SmtpEmailChannel:
    options: dict[str, Any] = {
        "mail_from": "ODR <no-reply@odr.example.vn>",
        "username": "odr",
        "password": "s3cret",
        "starttls": True,
        "ca_file": str(cert),
        "timeout_s": 5,
    }
    options.update(overrides)
    return SmtpEmailChannel("127.0.0.1", port, **options)


def test_email_goes_over_starttls_with_auth_as_text_and_html(
    relay: tuple[TlsRelay, Path], mailbox: Mailbox
) -> None:
    server, cert = relay
    result = _channel(server.port, cert).send(EMAIL)
    assert result.outcome == "sent", result.error
    assert server.logins == [b"odr"]
    [received] = mailbox.messages
    assert received["Subject"] == EMAIL.subject
    assert received["To"] == "an.nguyen@example.vn"
    assert received["Message-ID"] == "<odr-abc123@odr.example.vn>"
    assert received["Auto-Submitted"] == "auto-generated"
    plain = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert plain is not None
    assert "Nguyễn Văn An" in plain.get_content()
    assert html is not None
    assert "<p>Xin chào" in html.get_content()


def test_wrong_password_is_a_permanent_failure(
    relay: tuple[TlsRelay, Path], mailbox: Mailbox
) -> None:
    server, cert = relay
    result = _channel(server.port, cert, password="wrong").send(EMAIL)
    assert result.outcome == "failed"
    assert "535" in (result.error or "")
    assert mailbox.messages == []


def test_skipping_starttls_on_a_server_that_requires_it_fails(
    relay: tuple[TlsRelay, Path], mailbox: Mailbox
) -> None:
    server, cert = relay
    result = _channel(server.port, cert, starttls=False, username="").send(EMAIL)
    assert result.outcome == "failed"
    assert "530" in (result.error or "")


def test_an_untrusted_certificate_is_refused(relay: tuple[TlsRelay, Path], tmp_path: Path) -> None:
    server, _cert = relay
    other, _ = _self_signed(tmp_path / "..")
    result = _channel(server.port, other).send(EMAIL)
    assert result.outcome == "failed"
    assert "SSL" in (result.error or "") or "certificate" in (result.error or "")


def test_temporary_smtp_refusal_and_unreachable_server_are_retryable(mailbox: Mailbox) -> None:
    mailbox.fail_every = 1
    plain = SmtpEmailChannel("127.0.0.1", mailbox.port, mail_from="no-reply@odr.local")
    deferred = plain.send(EMAIL)
    assert deferred.outcome == "retry"
    assert "451" in (deferred.error or "")
    down = SmtpEmailChannel("127.0.0.1", free_port(), mail_from="no-reply@odr.local")
    assert down.send(EMAIL).outcome == "retry"


def test_permanent_smtp_refusal_fails(mailbox: Mailbox) -> None:
    mailbox.permanent_failure = True
    plain = SmtpEmailChannel("127.0.0.1", mailbox.port, mail_from="no-reply@odr.local")
    result = plain.send(EMAIL)
    assert result.outcome == "failed"
    assert "550" in (result.error or "")
