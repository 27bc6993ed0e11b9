"""Platform use cases: register, read, change, rotate secrets, API clients, OAuth tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.adapters import PlatformConfig
from gateway.domain import PLATFORM_KINDS
from gateway.models import ApiClient, OutboundDelivery, Platform
from gateway.settings import GatewaySettings
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.problems import Problem, not_found

KINDS_NEEDING_APP_KEY = ("lazada", "tiktok")


@dataclass(frozen=True)
class NewPlatform:
    platform_id: str
    webhook_secret: str
    client_id: str
    client_secret: str


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def hash_client_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _invalid(field: str, reason: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        f"{field}: {reason}",
        errors=[{"field": field, "reason": reason}],
    )


def register_platform(
    session: Session,
    cipher: DataCipher,
    *,
    name: str,
    kind: str,
    signing_secret: str | None,
    app_key: str | None,
    push_url: str | None,
    outbound_url: str | None,
    status_notifications: bool = False,
) -> NewPlatform:
    if kind not in PLATFORM_KINDS:
        raise _invalid("kind", f"one of {', '.join(PLATFORM_KINDS)}")
    if kind != "standard" and not signing_secret:
        raise _invalid("signing_secret", f"required for kind {kind}")
    if kind in KINDS_NEEDING_APP_KEY and not app_key:
        raise _invalid("app_key", f"required for kind {kind}: it is part of the signed message")
    platform_id = "plt_" + uuid.uuid4().hex[:16]
    outbound_secret = new_whsec()
    # A standard platform signs with the secret we give it; the others with their own.
    inbound_secret = signing_secret if kind != "standard" and signing_secret else outbound_secret
    now = utcnow()
    session.add(
        Platform(
            id=platform_id,
            name=name,
            kind=kind,
            signing_secret_enc=cipher.encrypt(inbound_secret),
            outbound_secret_enc=cipher.encrypt(outbound_secret),
            app_key=app_key,
            push_url=push_url,
            outbound_url=outbound_url,
            outbound_enabled=True,
            status_notifications=status_notifications,
            created_at=now,
        )
    )
    session.flush()
    client_id, client_secret = add_client(session, platform_id)
    return NewPlatform(platform_id, outbound_secret, client_id, client_secret)


def add_client(session: Session, platform_id: str) -> tuple[str, str]:
    client_id = "cli_" + uuid.uuid4().hex[:20]
    client_secret = secrets.token_urlsafe(32)
    session.add(
        ApiClient(
            client_id=client_id,
            platform_id=platform_id,
            secret_hash=hash_client_secret(client_secret),
            created_at=utcnow(),
        )
    )
    return client_id, client_secret


def revoke_client(session: Session, platform_id: str, client_id: str) -> None:
    client = session.get(ApiClient, client_id)
    if client is None or client.platform_id != platform_id:
        raise not_found("client")
    if client.revoked_at is None:
        client.revoked_at = utcnow()


def list_clients(session: Session, platform_id: str) -> list[ApiClient]:
    return list(
        session.execute(
            select(ApiClient)
            .where(ApiClient.platform_id == platform_id)
            .order_by(ApiClient.created_at)
        ).scalars()
    )


def authenticate_client(session: Session, client_id: str, client_secret: str) -> str:
    """Return the client's platform id, or raise 401; constant time whether or not it exists."""
    client = session.get(ApiClient, client_id)
    expected = client.secret_hash if client else hash_client_secret(secrets.token_hex(16))
    ok = hmac.compare_digest(expected, hash_client_secret(client_secret))
    if client is None or not ok or client.revoked_at is not None:
        raise Problem(401, "Unauthorized", "invalid client credentials")
    return client.platform_id


def get_platform(session: Session, platform_id: str) -> Platform:
    platform = session.get(Platform, platform_id)
    if platform is None:
        raise not_found("platform")
    return platform


def list_platforms(session: Session) -> list[Platform]:
    return list(session.execute(select(Platform).order_by(Platform.created_at)).scalars())


def update_platform(
    session: Session,
    platform_id: str,
    *,
    changes: dict[str, object],
) -> Platform:
    platform = get_platform(session, platform_id)
    for field in ("name", "app_key", "push_url", "outbound_url", "status_notifications"):
        if field in changes:
            setattr(platform, field, changes[field])
    if "outbound_enabled" in changes:
        enabled = bool(changes["outbound_enabled"])
        if enabled and not platform.outbound_enabled:
            # Deliveries held while the endpoint was disabled go out again.
            session.execute(
                update(OutboundDelivery)
                .where(
                    OutboundDelivery.platform_id == platform_id,
                    OutboundDelivery.status == "disabled",
                )
                .values(status="pending", next_attempt_at=utcnow(), schedule_step=0)
            )
            platform.outbound_disabled_reason = None
        platform.outbound_enabled = enabled
        if not enabled and not platform.outbound_disabled_reason:
            platform.outbound_disabled_reason = "disabled by an operator"
    return platform


@dataclass(frozen=True)
class Rotation:
    platform_id: str
    webhook_secret: str | None
    signing_secret_rotated: bool
    previous_valid_until: datetime


def rotate_secrets(
    session: Session,
    cipher: DataCipher,
    platform_id: str,
    *,
    signing_secret: str | None,
    rotate_webhook_secret: bool,
    grace_s: int,
) -> Rotation:
    """Swap in new secrets; the old ones keep verifying (and co-signing) until the grace ends."""
    platform = get_platform(session, platform_id)
    until = utcnow() + timedelta(seconds=grace_s)
    new_webhook: str | None = None
    if platform.kind == "standard":
        if signing_secret:
            raise _invalid("signing_secret", "a standard platform's secret is made by the gateway")
        # One whsec_ secret signs both ways for the standard kind.
        new_webhook = new_whsec()
        platform.signing_secret_previous_enc = platform.signing_secret_enc
        platform.signing_secret_previous_until = until
        platform.signing_secret_enc = cipher.encrypt(new_webhook)
        _rotate_outbound(platform, cipher, new_webhook, until)
        return Rotation(platform_id, new_webhook, True, until)
    if not signing_secret and not rotate_webhook_secret:
        raise _invalid("signing_secret", "give a new signing_secret or rotate_webhook_secret")
    if signing_secret:
        platform.signing_secret_previous_enc = platform.signing_secret_enc
        platform.signing_secret_previous_until = until
        platform.signing_secret_enc = cipher.encrypt(signing_secret)
    if rotate_webhook_secret:
        new_webhook = new_whsec()
        _rotate_outbound(platform, cipher, new_webhook, until)
    return Rotation(platform_id, new_webhook, bool(signing_secret), until)


def _rotate_outbound(platform: Platform, cipher: DataCipher, secret: str, until: datetime) -> None:
    platform.outbound_secret_previous_enc = platform.outbound_secret_enc
    platform.outbound_secret_previous_until = until
    platform.outbound_secret_enc = cipher.encrypt(secret)


def inbound_secrets(cipher: DataCipher, platform: Platform, now: datetime) -> tuple[str, ...]:
    out = [cipher.decrypt(platform.signing_secret_enc)]
    until = platform.signing_secret_previous_until
    if platform.signing_secret_previous_enc and (until is None or until > now):
        out.append(cipher.decrypt(platform.signing_secret_previous_enc))
    return tuple(out)


def outbound_secrets(cipher: DataCipher, platform: Platform, now: datetime) -> tuple[str, ...]:
    out = [cipher.decrypt(platform.outbound_secret_enc)]
    until = platform.outbound_secret_previous_until
    if platform.outbound_secret_previous_enc and until is not None and until > now:
        out.append(cipher.decrypt(platform.outbound_secret_previous_enc))
    return tuple(out)


def platform_config(
    cipher: DataCipher, platform: Platform, settings: GatewaySettings, now: datetime
) -> PlatformConfig:
    push_url = platform.push_url or (
        f"{settings.public_base_url.rstrip('/')}/v1/webhooks/{platform.id}"
    )
    return PlatformConfig(
        platform_id=platform.id,
        name=platform.name,
        kind=platform.kind,
        secrets=inbound_secrets(cipher, platform, now),
        app_key=platform.app_key,
        push_url=push_url,
        tolerance_s=settings.webhook_tolerance_s,
    )
