"""Consumers open sealed events: keys from the owning service, fetched per batch and cached."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.auth import ServiceTokens
from odr_shared.db import READ_ONLY
from odr_shared.events import CloudEvent, SealedPayloadV2
from odr_shared.privacy.keys import KeyStore, decode_key
from odr_shared.privacy.sealing import unsealed
from odr_shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# One request names at most this many keys (the endpoint refuses more).
MAX_KIDS_PER_REQUEST = 1000


class KeyUnavailable(Exception):
    """The owner of a key could not be asked (down, failing): try again later, never guess."""


class KeyClient:
    """Asks other services for subject keys: `POST {url}/internal/v1/subject-keys`."""

    def __init__(self, settings: ServiceSettings, service: str, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.tokens = ServiceTokens(settings, service)
        self._http = httpx.Client(timeout=timeout_s)

    def fetch(self, owner: str, kids: Sequence[str]) -> dict[str, bytes | None]:
        """Each kid's key, None for one the owner no longer holds (destroyed)."""
        out: dict[str, bytes | None] = {}
        try:
            url = self.settings.service_url(owner) + "/internal/v1/subject-keys"
        except KeyError as exc:
            raise KeyUnavailable(str(exc)) from exc
        for i in range(0, len(kids), MAX_KIDS_PER_REQUEST):
            chunk = list(kids[i : i + MAX_KIDS_PER_REQUEST])
            try:
                r = self._http.post(url, json={"kids": chunk}, headers=self.tokens.headers())
            except httpx.HTTPError as exc:
                raise KeyUnavailable(f"{owner} unreachable: {type(exc).__name__}") from exc
            if r.status_code != 200:
                raise KeyUnavailable(f"{owner} answered {r.status_code} for subject keys")
            keys = r.json().get("keys", {})
            for kid in chunk:
                text = keys.get(kid)
                out[kid] = decode_key(text) if isinstance(text, str) else None
        return out

    def close(self) -> None:
        self._http.close()


class Opener:
    """Opens v2 (sealed) events into their v1 payloads for a consumer that needs the personal data.

    Keys this service owns come from its own store; others from their owner over HTTP, one
    request per owner per batch (`prefetch`), kept `PRIVACY_KEY_CACHE_S` in memory. An erasure
    that reaches this service calls `forget(subject_id)`.
    """

    def __init__(
        self,
        *,
        service: str,
        client: KeyClient | None,
        store: KeyStore | None = None,
        session_factory: sessionmaker[Session] | None = None,
        cache_s: float = 60.0,
    ) -> None:
        self.service = service
        self.client = client
        self.store = store
        self.session_factory = session_factory
        self.cache_s = cache_s
        self._lock = threading.Lock()
        # kid -> (key or None if destroyed, subject id or "", expires at)
        self._cache: dict[str, tuple[bytes | None, str, float]] = {}
        # The current batch's subjects erased here, and when (see KeyStore.destroy).
        self._erased: dict[str, datetime | None] = {}

    @classmethod
    def from_settings(
        cls,
        settings: ServiceSettings,
        *,
        service: str,
        store: KeyStore | None = None,
        session_factory: sessionmaker[Session] | None = None,
    ) -> Opener:
        return cls(
            service=service,
            client=KeyClient(settings, service),
            store=store,
            session_factory=session_factory,
            cache_s=settings.privacy_key_cache_s,
        )

    def _cached(self, kid: str) -> tuple[bool, bytes | None]:
        with self._lock:
            hit = self._cache.get(kid)
            if hit is None or hit[2] < time.monotonic():
                return False, None
            return True, hit[0]

    def _remember(self, keys: dict[str, bytes | None], subjects: dict[str, str]) -> None:
        expires = time.monotonic() + self.cache_s
        with self._lock:
            if len(self._cache) > 100_000:
                now = time.monotonic()
                self._cache = {k: v for k, v in self._cache.items() if v[2] >= now}
            for kid, key in keys.items():
                self._cache[kid] = (key, subjects.get(kid, ""), expires)

    def forget(self, subject_id: str) -> None:
        """Drop what is cached for a subject (its erasure reached this service)."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1] != subject_id}
            self._erased.pop(subject_id, None)

    def _erased_at(self, subjects: Iterable[str]) -> dict[str, datetime | None]:
        """When each subject was erased in this service, None if never (own database)."""
        wanted = [s for s in dict.fromkeys(subjects) if s]
        if not wanted or self.store is None or self.session_factory is None:
            return {}
        with self.session_factory() as session:
            session.connection(execution_options={READ_ONLY: True})
            found = self.store.erased_at(session, wanted)
        return {s: found.get(s) for s in wanted}

    def _load(self, wanted: dict[str, tuple[str, str]]) -> dict[str, bytes | None]:
        """Fetch the keys `wanted` (kid -> (owner, subject id)) that are not cached."""
        loaded: dict[str, bytes | None] = {}
        by_owner: dict[str, list[str]] = {}
        for kid, (owner, _subject) in wanted.items():
            if not self._cached(kid)[0]:
                by_owner.setdefault(owner, []).append(kid)
        subjects = {kid: subject for kid, (_o, subject) in wanted.items()}
        for owner, kids in by_owner.items():
            if owner == self.service and self.store is not None and self.session_factory:
                with self.session_factory() as session:
                    session.connection(execution_options={READ_ONLY: True})
                    held = self.store.keys_by_id(session, kids)
                found: dict[str, bytes | None] = {
                    k: (held[k].key if k in held else None) for k in kids
                }
            elif self.client is not None:
                found = self.client.fetch(owner, kids)
            else:
                raise KeyUnavailable(f"no way to ask {owner} for keys")
            self._remember(found, subjects)
            loaded.update(found)
        return loaded

    @staticmethod
    def _wanted(events: Iterable[CloudEvent[Any]]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for event in events:
            if isinstance(event.data, SealedPayloadV2):
                sealed = event.data.sealed
                out[sealed.kid] = (sealed.owner, event.data.subject_id or "")
        return out

    def prefetch(self, events: Iterable[CloudEvent[Any]]) -> None:
        """Load the keys a batch needs in one request per owner; failures wait for `open`."""
        wanted = self._wanted(events)
        subjects = {subject for _owner, subject in wanted.values()}
        erased = self._erased_at(subjects)
        with self._lock:
            self._erased = erased
        try:
            self._load(wanted)
        except KeyUnavailable as exc:
            log.warning("subject keys not fetched ahead", extra={"error": str(exc)})

    def open(self, event: CloudEvent[Any]) -> CloudEvent[BaseModel] | None:
        """The event as its consumer's handlers read it (see `unsealed`); raises KeyUnavailable."""
        if not isinstance(event.data, SealedPayloadV2):
            return event
        subject = event.data.subject_id or ""
        with self._lock:
            known = subject in self._erased
            erased = self._erased.get(subject)
        if not known:
            erased = self._erased_at([subject]).get(subject)
        if erased is not None and event.time <= erased:
            # Written before this service erased the subject: a late copy, not opened again.
            return unsealed(event, None)
        kid = event.data.sealed.kid
        hit, key = self._cached(kid)
        if not hit:
            key = self._load(self._wanted([event])).get(kid)
        return unsealed(event, key)


def redacted(event: CloudEvent[Any]) -> CloudEvent[BaseModel] | None:
    """The event as a consumer without an opener reads it: no personal fields at all."""
    if not isinstance(event.data, SealedPayloadV2):
        return event
    return unsealed(event, None)
