"""Email over SMTP to any server: STARTTLS or implicit TLS, AUTH, multipart text + HTML."""

from __future__ import annotations

import smtplib
import ssl
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from notifications.channels.base import Message, ProviderResult

# CPython's header folding at 78 columns drops the space where it splits a Vietnamese subject
# into two encoded words ("đã được" arrives as "đãđược"); folding only at the hard 998 limit
# keeps the subject in one encoded word, which every client we know reads.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)


class SmtpEmailChannel:
    """4xx replies, timeouts and dropped connections: retry; 5xx replies: failed."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        mail_from: str,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        use_ssl: bool = False,
        ca_file: str = "",
        timeout_s: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.mail_from = mail_from
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.timeout_s = timeout_s
        self._tls = ssl.create_default_context(cafile=ca_file or None)

    def build(self, message: Message) -> EmailMessage:
        email = EmailMessage(policy=MAIL_POLICY)
        email["Subject"] = message.subject or ""
        email["From"] = self.mail_from
        email["To"] = message.to
        email["Date"] = formatdate(localtime=False)
        # Stable across retries, so a receiving server or client can spot a duplicate.
        domain = Address(addr_spec=_addr_spec(self.mail_from)).domain or "odr.local"
        email["Message-ID"] = f"<{message.reference}@{domain}>"
        email["Auto-Submitted"] = "auto-generated"
        email["Content-Language"] = message.language
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._tls)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def send(self, message: Message) -> ProviderResult:
        email = self.build(message)
        try:
            with self._connect() as smtp:
                smtp.ehlo()
                if self.starttls and not self.use_ssl:
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _msg in exc.recipients.values()]
            return _by_code(min(codes) if codes else 550, f"recipient refused: {codes}")
        except smtplib.SMTPResponseException as exc:
            return _by_code(exc.smtp_code, f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, TimeoutError) as exc:
            return ProviderResult.retry(f"{type(exc).__name__}: {exc}")
        except (ssl.SSLError, smtplib.SMTPNotSupportedError) as exc:
            # A TLS or capability mismatch is configuration: retrying will not mend it.
            return ProviderResult.failed(f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            return ProviderResult.retry(f"{type(exc).__name__}: {exc}")
        if refused:
            return ProviderResult.failed(f"recipient refused: {list(refused.values())}")
        return ProviderResult.sent(email["Message-ID"])


def _by_code(code: int, detail: str) -> ProviderResult:
    if 400 <= code < 500:
        return ProviderResult.retry(detail)
    return ProviderResult.failed(detail)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _addr_spec(mailbox: str) -> str:
    return mailbox.rsplit("<", 1)[-1].rstrip(">").strip()
