"""The one place the notifications service's parts are wired from its settings."""

from __future__ import annotations

import math
from datetime import timedelta

from kafka import KafkaProducer
from sqlalchemy.orm import Session, sessionmaker

from notifications.channels.base import Channel
from notifications.channels.email_smtp import SmtpEmailChannel
from notifications.channels.sms_http import HttpSmsChannel
from notifications.deliveries import Notifier
from notifications.dispatcher import Clock, Dispatcher, KafkaDeadLetters
from notifications.policy import QuietHours, RateLimit, RetryPolicy
from notifications.rendering import Renderer
from notifications.settings import NotificationsSettings
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.privacy import KeyStore, Opener
from odr_shared.privacy.keys import subject_key_material

SERVICE = "notifications"


def cipher(settings: NotificationsSettings) -> DataCipher:
    return DataCipher(settings.data_encryption_key)


def notifier(settings: NotificationsSettings, clock: Clock = utcnow) -> Notifier:
    return Notifier(
        cipher=cipher(settings),
        renderer=Renderer(
            portal_url=settings.portal_url,
            dashboard_url=settings.dashboard_url,
            sms_max_segments=settings.sms_max_segments,
            sms_unaccented=settings.sms_unaccented,
        ),
        public_base_url=settings.public_base_url,
        clock=clock,
        subject_key=subject_key_material(settings),
    )


def key_store(settings: NotificationsSettings) -> KeyStore:
    return KeyStore.from_settings(settings)


def opener(
    settings: NotificationsSettings, store: KeyStore, session_factory: sessionmaker[Session]
) -> Opener:
    """Opens sealed events of orders, cases, mediation and commands with their owners' keys
    (`SERVICE_URLS`); notifications' own from its store."""
    return Opener.from_settings(
        settings, service=SERVICE, store=store, session_factory=session_factory
    )


def channels(settings: NotificationsSettings) -> dict[str, Channel]:
    return {
        "sms": HttpSmsChannel(
            settings.sms_provider_url,
            api_key=settings.sms_api_key,
            sender=settings.sms_sender,
            timeout_s=settings.sms_timeout_s,
        ),
        "email": SmtpEmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            use_ssl=settings.smtp_ssl,
            ca_file=settings.smtp_ca_file,
            timeout_s=settings.smtp_timeout_s,
        ),
    }


def dispatcher(
    settings: NotificationsSettings,
    session_factory: sessionmaker[Session],
    producer: KafkaProducer,
    *,
    clock: Clock = utcnow,
    channel_map: dict[str, Channel] | None = None,
    urgent_only: bool = False,
) -> Dispatcher:
    return Dispatcher(
        session_factory=session_factory,
        cipher=cipher(settings),
        channels=channel_map if channel_map is not None else channels(settings),
        dead_letters=KafkaDeadLetters(producer),
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            initial=timedelta(seconds=settings.backoff_initial_s),
            maximum=timedelta(seconds=settings.backoff_max_s),
        ),
        rate_limit=RateLimit(
            max_messages=settings.rate_limit_per_recipient,
            window=timedelta(seconds=settings.rate_limit_window_s),
        ),
        quiet_hours=QuietHours.parse(
            settings.quiet_hours_start, settings.quiet_hours_end, settings.timezone
        ),
        clock=clock,
        batch_size=settings.dispatch_batch_size,
        lease=timedelta(seconds=lease_s(settings)),
        poll_interval_s=settings.dispatch_poll_interval_s,
        concurrency=settings.dispatch_concurrency,
        urgent_only=urgent_only,
    )


def lease_s(settings: NotificationsSettings) -> float:
    """A claim must outlast the slowest round of sends, or a second sender could take it over
    while the first is still waiting on a provider."""
    rounds = math.ceil(settings.dispatch_batch_size / settings.dispatch_concurrency)
    slowest = max(settings.sms_timeout_s, settings.smtp_timeout_s * 4)  # connect, TLS, auth, data
    return max(settings.dispatch_lease_s, rounds * slowest * 1.5)
