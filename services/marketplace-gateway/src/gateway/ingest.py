"""Inbound use cases: verify, map, merge and store a delivery; publish via the outbox; replay."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NoReturn, Protocol

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.adapters import ADAPTERS, PlatformConfig, StandardAdapter
from gateway.adapters.base import load_object, validate
from gateway.adapters.standard import CanonicalOrder
from gateway.domain import KnownOrder, Mapping, MappingError, OrderUpdate, merge
from gateway.metrics import INBOUND_DELIVERIES
from gateway.models import InboundDelivery, InboundEvent, OrderSnapshot
from gateway.platforms import get_platform, platform_config
from gateway.settings import GatewaySettings
from gateway.signatures import SignatureError
from odr_shared.crypto import DataCipher
from odr_shared.db import BulkInsert, utcnow
from odr_shared.events import (
    ORDERS_TOPIC,
    Buyer,
    CloudEvent,
    OrderItem,
    OrderStatus,
    OrderStatusChangedV1,
    Seller,
    build_event,
    order_id,
)
from odr_shared.logs import scrub, scrub_value
from odr_shared.outbox import add_many_to_outbox
from odr_shared.problems import Problem, not_found
from odr_shared.ratelimit import Limit, hit, hit_many, too_many

log = logging.getLogger(__name__)

# The tables behind the models, for Core bulk statements on the hot path.
_DELIVERIES: Table = InboundDelivery.__table__  # type: ignore[assignment]
_EVENTS: Table = InboundEvent.__table__  # type: ignore[assignment]
_SNAPSHOTS: Table = OrderSnapshot.__table__  # type: ignore[assignment]
# Built once: constructing a statement costs about as much as running it on SQLite.
_SEEN_DELIVERIES = select(
    _DELIVERIES.c.id,
    _DELIVERIES.c.delivery_key,
    _DELIVERIES.c.status,
    _DELIVERIES.c.event_id,
    _DELIVERIES.c.summary,
).where(
    _DELIVERIES.c.platform_id == bindparam("platform_id"),
    _DELIVERIES.c.delivery_key.in_(bindparam("keys", expanding=True)),
)
_SEEN_EVENTS = select(_EVENTS.c.event_key).where(
    _EVENTS.c.platform_id == bindparam("platform_id"),
    _EVENTS.c.event_key.in_(bindparam("keys", expanding=True)),
)
# SQLite cannot return a multi-row INSERT's generated ids in parameter order, so SQLAlchemy
# runs an ordered RETURNING one row at a time there; returning each row's unique delivery key
# with its id lets the rows go in one statement, matched back by key.
_INSERT_DELIVERIES = BulkInsert(
    _DELIVERIES,
    (
        "platform_id",
        "delivery_key",
        "source",
        "http_status",
        "headers",
        "body_enc",
        "body_size",
        "replay_of",
        "received_at",
        "status",
        "error",
        "summary",
        "order_id",
        "event_id",
    ),
)
_INSERT_DELIVERIES_ORDERED = insert(_DELIVERIES).returning(
    _DELIVERIES.c.id, sort_by_parameter_order=True
)
_INSERT_EVENTS = BulkInsert(
    _EVENTS, ("platform_id", "event_key", "delivery_id", "order_id", "event_id", "received_at")
)
_SNAPSHOTS_FOR_UPDATE = (
    select(_SNAPSHOTS)
    .where(_SNAPSHOTS.c.order_id.in_(bindparam("oids", expanding=True)))
    .with_for_update()
)
_SNAPSHOT_FIELDS = (
    "order_code",
    "status",
    "status_at",
    "buyer_enc",
    "seller",
    "items",
    "total_amount",
    "currency",
    "updated_at",
)
_INSERT_SNAPSHOTS = BulkInsert(_SNAPSHOTS, ("order_id", "platform_id", *_SNAPSHOT_FIELDS))
_UPDATE_SNAPSHOT = (
    sa_update(_SNAPSHOTS)
    .where(_SNAPSHOTS.c.order_id == bindparam("b_order_id"))
    .values({n: bindparam(f"b_{n}", type_=_SNAPSHOTS.c[n].type) for n in _SNAPSHOT_FIELDS})
)

SOURCE = "odr/marketplace-gateway"
# Headers worth keeping with a delivery for inspection and replay; signatures and credentials
# are never stored.
_DROPPED_HEADERS = ("authorization", "cookie", "webhook-signature")
_KEPT_HEADERS = ("content-type", "user-agent", "idempotency-key")


def kept_headers(headers: MappingABC[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        n = name.lower()
        # Client addresses are personal data too; the platform is known from the path.
        if n in _DROPPED_HEADERS or "hmac" in n or n.startswith(("x-forwarded", "x-real-ip")):
            continue
        if n.startswith(("webhook-", "x-")) or n in (
            "content-type",
            "user-agent",
            "idempotency-key",
        ):
            out[n] = value[:500]
    return out


@dataclass
class Receipt:
    http_status: int
    delivery_id: int
    status: str  # accepted | held | ignored | stale | duplicate
    duplicate: bool
    event_ids: list[str] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    # The platform's kind, for the API process's metrics when a store process stored it.
    kind: str = field(default="", compare=False)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "duplicate": self.duplicate,
            "event_id": self.event_ids[0] if len(self.event_ids) == 1 else None,
            "summary": self.summary,
        }
        if len(self.event_ids) > 1:
            doc["event_count"] = len(self.event_ids)
        return doc


# A request's event loop and the future it awaits; that future with the writer's own.
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Receipt]"]
_Settled = tuple["asyncio.Future[Receipt]", "Future[Receipt]"]


@dataclass
class Pending:
    """A verified, mapped delivery waiting for the group writer to store it."""

    platform_id: str
    kind: str
    notify: bool
    mapping: Mapping
    headers: dict[str, str]
    body: bytes
    source: str
    ack_status: int
    strict: bool
    field_prefix: str

    @property
    def size(self) -> int:
        return max(1, len(self.mapping.updates))


@dataclass
class RawDelivery:
    """A webhook (or a signed batch) as received, for the group writer to verify and map.

    The hot path and the batch route hand these over instead of a `Pending`, so verifying and
    mapping run where the group is stored (the store process, when there is one) rather than
    in the API process, and what crosses to the store process is bytes: a batch's thousand
    mapped updates cost more to pickle and unpickle than to map again.
    """

    platform_id: str
    headers: dict[str, str]
    body: bytes
    batch: bool = False

    @property
    def size(self) -> int:
        # Before it is mapped: a batch counts as the most updates it may carry.
        return 1000 if self.batch else 1


# What the group writer takes: a delivery verified and mapped already, or one to verify.
Item = Pending | RawDelivery
# A group the writer stores together: each item with the future its request waits on.
Group = list[tuple[Item, Future[Receipt]]]


class NotPrepared(Exception):
    """A RawDelivery that did not verify or map (or names no platform): take the route."""


class IncompleteOrder(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["reason"])
        self.errors = errors


def _problem_for(errors: list[dict[str, str]], http_status: int, delivery_id: int) -> Problem:
    first = errors[0]
    title = "Bad Request" if http_status == 400 else "Unprocessable Content"
    return Problem(
        http_status,
        title,
        f"{first['field']}: {first['reason']}",
        errors=errors,
        delivery_id=delivery_id,
    )


class Ingestor:
    """Receives deliveries for every platform kind; one instance per process."""

    def __init__(
        self, factory: sessionmaker[Session], cipher: DataCipher, settings: GatewaySettings
    ) -> None:
        self.factory = factory
        self.engine: Engine = factory.kw["bind"]
        self.cipher = cipher
        self.settings = settings
        self.limit = Limit("webhooks", settings.webhook_rate_limit, settings.webhook_rate_window_s)
        self._platforms: dict[str, tuple[float, PlatformConfig, str, bool]] = {}
        self.writer = GroupWriter(self)

    # -- platform settings, cached -----------------------------------------------------------

    def platform_settings(self, platform_id: str) -> tuple[PlatformConfig, str, bool]:
        """A platform's verification config, kind and notify flag, cached for a few seconds.

        Reading the platform and decrypting its secrets was a third of a webhook's cost. A stale
        entry is safe: a rotated-out secret keeps verifying through its grace period anyway, and
        this process's own platform writes drop the entry (`forget_platform`).
        """
        ttl = self.settings.platform_cache_ttl_s
        now = time.monotonic()
        cached = self._platforms.get(platform_id)
        if cached is not None and now - cached[0] < ttl:
            return cached[1], cached[2], cached[3]
        with self.factory() as session:
            platform = get_platform(session, platform_id)
            cfg = platform_config(self.cipher, platform, self.settings, utcnow())
            kind, notify = platform.kind, platform.status_notifications
        if ttl > 0:
            self._platforms[platform_id] = (now, cfg, kind, notify)
        return cfg, kind, notify

    def prepare_cached(
        self,
        platform_id: str,
        headers: MappingABC[str, str],
        body: bytes,
        *,
        batch: bool = False,
    ) -> Pending | None:
        """`prepare` without any database access, for the event loop: CPU only.

        None when it would need the database (platform not cached, or the delivery is refused
        and must be recorded): the caller then runs `prepare` in a thread, which does it all.
        """
        cached = self._platforms.get(platform_id)
        if cached is None or time.monotonic() - cached[0] >= self.settings.platform_cache_ttl_s:
            return None
        _at, cfg, kind, notify = cached
        return self._verified(platform_id, cfg, kind, notify, headers, body, batch=batch)

    def prepare_unrecorded(self, raw: RawDelivery) -> Pending | None:
        """`prepare` for the group writer: reads the platform (cached) but records nothing.

        None when the delivery is refused or the platform unknown: the request then takes the
        documented route, which verifies again and records the refusal.
        """
        try:
            cfg, kind, notify = self.platform_settings(raw.platform_id)
        except Problem:
            return None
        return self._verified(
            raw.platform_id, cfg, kind, notify, raw.headers, raw.body, batch=raw.batch
        )

    def _verified(
        self,
        platform_id: str,
        cfg: PlatformConfig,
        kind: str,
        notify: bool,
        headers: MappingABC[str, str],
        body: bytes,
        *,
        batch: bool = False,
    ) -> Pending | None:
        if batch and kind != "standard":
            return None
        adapter = ADAPTERS[kind]
        try:
            adapter.verify(cfg, headers, body)
            if batch:
                assert isinstance(adapter, StandardAdapter)
                mapping = adapter.map_batch(headers, body)
            else:
                mapping = adapter.map(cfg, headers, body)
        except (SignatureError, MappingError):
            return None
        prefix = "events.{i}.data" if batch else ("data" if kind == "standard" else "")
        return Pending(
            platform_id,
            kind,
            notify,
            mapping,
            kept_headers(headers),
            body,
            source="batch" if batch else "webhook",
            ack_status=adapter.ack_status,
            strict=kind == "standard",
            field_prefix=prefix,
        )

    def forget_platform(self, platform_id: str) -> None:
        self._platforms.pop(platform_id, None)

    def _count_hit(self, platform_id: str) -> None:
        # Its own transaction so the hit sticks even when the delivery is then refused.
        with self.factory() as session, session.begin():
            hit(session, self.limit, platform_id)

    # -- entry points ------------------------------------------------------------------------

    def receive(
        self,
        platform_id: str,
        headers: MappingABC[str, str],
        body: bytes,
        *,
        batch: bool = False,
        now: float | None = None,
    ) -> Receipt:
        """One webhook delivery (or one signed batch): verify, map, store, publish."""
        pending = self.prepare(platform_id, headers, body, batch=batch, now=now)
        return self.writer.submit(pending).result()

    def prepare(
        self,
        platform_id: str,
        headers: MappingABC[str, str],
        body: bytes,
        *,
        batch: bool = False,
        now: float | None = None,
    ) -> Pending:
        """Verify and map a delivery (no writes unless refused); the group writer stores it.

        A refused delivery counts against the rate limit in its own transaction before it is
        kept, so an over-limit caller gets 429 whatever it sent, as when the hit came first.
        """
        cfg, kind, notify = self.platform_settings(platform_id)
        if batch and kind != "standard":
            raise Problem(
                400,
                "Bad Request",
                f"the batch endpoint takes standard-kind platforms; this one is {kind}",
            )
        adapter = ADAPTERS[kind]
        kept = kept_headers(headers)
        source = "batch" if batch else "webhook"
        try:
            adapter.verify(cfg, headers, body, now=now)
        except SignatureError as exc:
            self._count_hit(platform_id)
            self.reject(platform_id, kept, body, 401, f"signature rejected: {exc}", source)
            log.warning(
                "webhook signature rejected",
                extra={"platform_id": platform_id, "kind": kind, "reason": str(exc)},
            )
            raise Problem(401, "Unauthorized", f"signature rejected: {exc}") from exc
        try:
            if batch:
                assert isinstance(adapter, StandardAdapter)
                mapping = adapter.map_batch(headers, body)
            else:
                mapping = adapter.map(cfg, headers, body)
        except MappingError as exc:
            self._count_hit(platform_id)
            delivery = self.reject(
                platform_id, kept, body, exc.http_status, json.dumps(exc.errors), source
            )
            raise _problem_for(exc.errors, exc.http_status, delivery) from exc
        prefix = "events.{i}.data" if batch else ("data" if kind == "standard" else "")
        return Pending(
            platform_id,
            kind,
            notify,
            mapping,
            kept,
            body,
            source=source,
            ack_status=adapter.ack_status,
            strict=kind == "standard",
            field_prefix=prefix,
        )

    def receive_order(
        self, platform_id: str, order: CanonicalOrder, idempotency_key: str | None
    ) -> Receipt:
        """A canonical ORDER through the REST API (platform token): full orders for any kind."""
        with self.factory() as session:
            platform = get_platform(session, platform_id)
            kind, notify = platform.kind, platform.status_notifications
        with self.factory() as session, session.begin():
            hit(session, self.limit, platform_id)
        body = order.model_dump_json(exclude_none=True).encode()
        mapping = Mapping(
            delivery_key=f"api:{idempotency_key}" if idempotency_key else "",
            updates=[order.to_update()],
        )
        kept = {"idempotency-key": idempotency_key} if idempotency_key else {}
        return self._store(
            platform_id,
            kind,
            notify,
            mapping,
            kept,
            body,
            source="api",
            ack_status=200,
            strict=True,
            field_prefix="",
        )

    def replay(self, platform_id: str, delivery_id: int) -> Receipt:
        """Map a stored delivery again, without its signature (an operator vouches for it)."""
        with self.factory() as session:
            row = session.get(InboundDelivery, delivery_id)
            if row is None or row.platform_id != platform_id:
                raise not_found("delivery")
            platform = get_platform(session, platform_id)
            cfg = platform_config(self.cipher, platform, self.settings, utcnow())
            kind, notify = platform.kind, platform.status_notifications
            body = self.cipher.decrypt_bytes(row.body_enc)
            headers = dict(row.headers)
            source = row.source
            origin = row
            # A replay of a replay reads the body the way the first delivery was read.
            while source == "replay" and origin.replay_of is not None:
                parent = session.get(InboundDelivery, origin.replay_of)
                if parent is None:
                    break
                origin, source = parent, parent.source
        adapter = ADAPTERS[kind]
        try:
            if source == "api":
                order = validate(CanonicalOrder, load_object(body))
                mapping = Mapping("", updates=[order.to_update()])
            elif source == "batch":
                assert isinstance(adapter, StandardAdapter)
                mapping = adapter.map_batch(headers, body)
            else:
                mapping = adapter.map(cfg, headers, body)
        except (MappingError, KeyError) as exc:
            errors = (
                exc.errors
                if isinstance(exc, MappingError)
                else [{"field": str(exc), "reason": "missing from the stored delivery"}]
            )
            status = exc.http_status if isinstance(exc, MappingError) else 422
            new_id = self.reject(
                platform_id, headers, body, status, json.dumps(errors), "replay", delivery_id
            )
            raise _problem_for(errors, status, new_id) from exc
        prefix = "events.{i}.data" if source == "batch" else ("data" if kind == "standard" else "")
        return self._store(
            platform_id,
            kind,
            notify,
            replace(mapping, delivery_key=""),
            headers,
            body,
            source="replay",
            ack_status=200,
            strict=kind == "standard" or source == "api",
            field_prefix=prefix,
            replay_of=delivery_id,
        )

    def reject(
        self,
        platform_id: str,
        headers: dict[str, str],
        body: bytes,
        http_status: int,
        error: str,
        source: str = "webhook",
        replay_of: int | None = None,
    ) -> int:
        """Keep a rejected delivery (its own transaction) for inspection and replay."""
        INBOUND_DELIVERIES.labels("any", "rejected").inc()
        with self.factory() as session, session.begin():
            row = InboundDelivery(
                platform_id=platform_id,
                delivery_key=None,
                source=source,
                status="rejected",
                http_status=http_status,
                error=error[:4000],
                headers=headers,
                body_enc=self.cipher.encrypt_bytes(body),
                body_size=len(body),
                replay_of=replay_of,
                received_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    def reject_oversize(
        self, platform_id: str, headers: MappingABC[str, str], size: int, limit: int
    ) -> NoReturn:
        with self.factory() as session:
            get_platform(session, platform_id)
        # The body itself is not kept: storing what we refuse to read would defeat the limit.
        delivery = self.reject(
            platform_id, kept_headers(headers), b"", 413, f"body of {size}+ bytes exceeds {limit}"
        )
        raise Problem(
            413,
            "Content Too Large",
            f"body exceeds {limit} bytes",
            delivery_id=delivery,
        )

    # -- group commit ------------------------------------------------------------------------

    def commit_group(self, group: Group) -> None:
        """Store a group of verified deliveries in one transaction, then answer each of them.

        Each answer comes only after the transaction holding its delivery and outbox rows
        committed. When the group fails as a whole (one incomplete order, a concurrent twin's
        unique key), its deliveries are stored one by one so one bad item fails only itself.
        Later copies of a delivery key already in the group are stored after it, one by one,
        so they see the first copy and answer as duplicates.
        """
        live: list[tuple[Pending, Future[Receipt]]] = []
        for entry, fut in group:
            if not fut.set_running_or_notify_cancel():
                continue
            prepared = self.prepare_unrecorded(entry) if isinstance(entry, RawDelivery) else entry
            if prepared is None:
                fut.set_exception(NotPrepared())
                continue
            live.append((prepared, fut))
        firsts: set[tuple[str, str]] = set()
        bulk: list[tuple[Pending, Future[Receipt]]] = []
        later: list[tuple[Pending, Future[Receipt]]] = []
        for item in live:
            key = item[0].mapping.delivery_key
            if key and (item[0].platform_id, key) in firsts:
                later.append(item)
                continue
            if key:
                firsts.add((item[0].platform_id, key))
            bulk.append(item)
        outcomes: list[Receipt | Problem] | None
        try:
            outcomes = self._store_group([p for p, _f in bulk]) if bulk else []
        except Exception as exc:  # noqa: BLE001 - any failure: retry the items one by one
            log.info(
                "group commit fell back to one by one",
                extra={"size": len(bulk), "error": type(exc).__name__},
            )
            outcomes = None
        if outcomes is None:
            later = live  # one by one, in arrival order (rate-limit counts, twins)
        else:
            for (pending, fut), outcome in zip(bulk, outcomes, strict=True):
                if isinstance(outcome, Problem):
                    fut.set_exception(outcome)
                else:
                    INBOUND_DELIVERIES.labels(pending.kind, outcome.status).inc()
                    outcome.kind = pending.kind
                    fut.set_result(outcome)
        for pending, fut in later:
            try:
                receipt = self._store_one(pending)
                receipt.kind = pending.kind
                fut.set_result(receipt)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                fut.set_exception(exc)

    def _store_one(self, pending: Pending) -> Receipt:
        self._count_hit(pending.platform_id)
        return self._store(
            pending.platform_id,
            pending.kind,
            pending.notify,
            pending.mapping,
            pending.headers,
            pending.body,
            source=pending.source,
            ack_status=pending.ack_status,
            strict=pending.strict,
            field_prefix=pending.field_prefix,
        )

    def _store_group(self, pendings: list[Pending]) -> list[Receipt | Problem]:
        """The set-based store: rate limit, duplicates, deliveries, merges, outbox; one commit."""
        out: list[Receipt | Problem | None] = [None] * len(pendings)
        by_platform: dict[tuple[str, str, bool, bool], list[int]] = {}
        for i, p in enumerate(pendings):
            by_platform.setdefault((p.platform_id, p.kind, p.notify, p.strict), []).append(i)
        now = utcnow()
        # Core statements on a Core transaction: an ORM session's bookkeeping (per statement,
        # and per transaction: a fifth of a small group's cost) buys nothing here.
        with self.engine.begin() as conn:
            for (platform_id, kind, notify, strict), idxs in by_platform.items():
                allowed = hit_many(conn, self.limit, platform_id, len(idxs))
                for i in idxs[allowed:]:
                    out[i] = too_many(self.limit)
                self._store_platform_group(
                    conn, platform_id, kind, notify, strict, pendings, idxs[:allowed], out, now
                )
        assert all(o is not None for o in out)
        return [o for o in out if o is not None]

    def _store_platform_group(
        self,
        conn: Connection,
        platform_id: str,
        kind: str,
        notify: bool,
        strict: bool,
        pendings: list[Pending],
        idxs: list[int],
        out: list[Receipt | Problem | None],
        now: datetime,
    ) -> None:
        keys = [k for i in idxs if (k := pendings[i].mapping.delivery_key)]
        existing: dict[str, Any] = {}
        for chunk in _chunks(keys, 500):
            params = {"platform_id": platform_id, "keys": chunk}
            for found in conn.execute(_SEEN_DELIVERIES, params):
                existing[found.delivery_key] = found
        fresh: list[int] = []
        for i in idxs:
            p = pendings[i]
            row = existing.get(p.mapping.delivery_key) if p.mapping.delivery_key else None
            if row is None:
                fresh.append(i)
                continue
            # The same delivery again: one effect, the same answer.
            out[i] = Receipt(
                p.ack_status,
                row.id,
                row.status,
                duplicate=True,
                event_ids=[row.event_id] if row.event_id else [],
                summary=dict(row.summary or {}),
            )
        if not fresh:
            return
        # Merge first (the group's index stands for each delivery), so every delivery row is
        # inserted once with its final status, and events are built once its id is known.
        entries: list[tuple[OrderUpdate, int, str]] = []
        for i in fresh:
            p = pendings[i]
            if p.mapping.ignored is None:
                entries.extend(
                    (u, i, p.field_prefix.format(i=j)) for j, u in enumerate(p.mapping.updates)
                )
        per_ref, merged = self._merge_updates(conn, platform_id, entries, now, strict=strict)
        event_ids: dict[int, list[str]] = {}
        for m in merged:
            if m.event_id is not None:
                event_ids.setdefault(m.ref, []).append(m.event_id)
        rows: list[dict[str, Any]] = []
        for i in fresh:
            p = pendings[i]
            row = {
                "platform_id": platform_id,
                "delivery_key": p.mapping.delivery_key or None,
                "source": p.source,
                "http_status": p.ack_status,
                "headers": p.headers,
                "body_enc": self.cipher.encrypt_bytes(p.body),
                "body_size": len(p.body),
                "replay_of": None,
                "received_at": now,
            }
            if p.mapping.ignored is not None:
                row.update(status="ignored", error=p.mapping.ignored, summary=None)
                row.update(order_id=None, event_id=None)
            else:
                counts = per_ref.get(i, Counter())
                updates = p.mapping.updates
                evs = event_ids.get(i, [])
                row.update(status=_delivery_status(counts), error=None, summary=dict(counts))
                row.update(
                    order_id=order_id(platform_id, updates[0].order_code)
                    if len(updates) == 1
                    else None,
                    event_id=evs[0] if evs else None,
                )
            rows.append(row)
        ids = _insert_deliveries(conn, rows)
        delivery_ids = dict(zip(fresh, ids, strict=True))
        self._record_events(conn, platform_id, kind, notify, merged, delivery_ids, now)
        for i, delivery_id, row in zip(fresh, ids, rows, strict=True):
            out[i] = Receipt(
                pendings[i].ack_status,
                delivery_id,
                row["status"],
                duplicate=row["status"] == "duplicate",
                event_ids=event_ids.get(i, []),
                summary=dict(row["summary"] or {}),
            )

    # -- storing -----------------------------------------------------------------------------

    def _store(
        self,
        platform_id: str,
        kind: str,
        notify: bool,
        mapping: Mapping,
        headers: dict[str, str],
        body: bytes,
        *,
        source: str,
        ack_status: int,
        strict: bool,
        field_prefix: str,
        replay_of: int | None = None,
    ) -> Receipt:
        delivery_key = mapping.delivery_key or None
        # A concurrent twin may win the unique keys: the second pass then sees its rows.
        for attempt in range(3):
            try:
                with self.factory() as session, session.begin():
                    receipt = self._store_in(
                        session,
                        platform_id,
                        kind,
                        notify,
                        mapping,
                        delivery_key,
                        headers,
                        body,
                        source=source,
                        ack_status=ack_status,
                        strict=strict,
                        field_prefix=field_prefix,
                        replay_of=replay_of,
                    )
                INBOUND_DELIVERIES.labels(kind, receipt.status).inc()
                return receipt
            except IncompleteOrder as exc:
                delivery = self.reject(
                    platform_id, headers, body, 422, json.dumps(exc.errors), source, replay_of
                )
                raise _problem_for(exc.errors, 422, delivery) from exc
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _store_in(
        self,
        session: Session,
        platform_id: str,
        kind: str,
        notify: bool,
        mapping: Mapping,
        delivery_key: str | None,
        headers: dict[str, str],
        body: bytes,
        *,
        source: str,
        ack_status: int,
        strict: bool,
        field_prefix: str,
        replay_of: int | None,
    ) -> Receipt:
        if delivery_key is not None:
            existing = session.execute(
                select(InboundDelivery).where(
                    InboundDelivery.platform_id == platform_id,
                    InboundDelivery.delivery_key == delivery_key,
                )
            ).scalar_one_or_none()
            if existing is not None:
                # The same delivery again: one effect, the same answer.
                return Receipt(
                    ack_status,
                    existing.id,
                    existing.status,
                    duplicate=True,
                    event_ids=[existing.event_id] if existing.event_id else [],
                    summary=dict(existing.summary or {}),
                )
        now = utcnow()
        row = InboundDelivery(
            platform_id=platform_id,
            delivery_key=delivery_key,
            source=source,
            status="accepted",
            http_status=ack_status,
            headers=headers,
            body_enc=self.cipher.encrypt_bytes(body),
            body_size=len(body),
            replay_of=replay_of,
            received_at=now,
        )
        session.add(row)
        session.flush()
        if mapping.ignored is not None:
            row.status = "ignored"
            row.error = mapping.ignored
            return Receipt(ack_status, row.id, "ignored", duplicate=False)
        conn = session.connection()
        per_ref, merged = self._merge_updates(
            conn,
            platform_id,
            [(u, row.id, field_prefix.format(i=i)) for i, u in enumerate(mapping.updates)],
            now,
            strict=strict,
        )
        self._record_events(conn, platform_id, kind, notify, merged, {row.id: row.id}, now)
        counts = per_ref.get(row.id, Counter())
        event_ids = [m.event_id for m in merged if m.event_id is not None]
        row.status = _delivery_status(counts)
        row.summary = dict(counts)
        if len(mapping.updates) == 1:
            row.order_id = order_id(platform_id, mapping.updates[0].order_code)
        if event_ids:
            row.event_id = event_ids[0]
        return Receipt(
            ack_status,
            row.id,
            row.status,
            duplicate=row.status == "duplicate",
            event_ids=event_ids,
            summary=dict(counts),
        )

    def _merge_updates(
        self,
        conn: Connection,
        platform_id: str,
        entries: list[tuple[OrderUpdate, int, str]],
        now: datetime,
        *,
        strict: bool,
    ) -> tuple[dict[int, Counter[str]], list[_Merged]]:
        """Dedup by marketplace event, merge each update into its order snapshot, save snapshots.

        `entries` are (update, a reference to its delivery, the field prefix naming it in that
        delivery), in arrival order, from one delivery or from a group of them. Set-based (one
        SELECT for seen events, one for snapshots, bulk inserts) so a thousand events are one
        short transaction. Needs no delivery id: returns the counts per reference and every
        update that was not a duplicate, with an event id drawn for each one to publish.
        """
        updates = [u for u, _d, _p in entries]
        keys = list({u.event_key for u in updates})
        seen: set[str] = set()
        for chunk in _chunks(keys, 500):
            seen.update(
                conn.execute(_SEEN_EVENTS, {"platform_id": platform_id, "keys": chunk}).scalars()
            )
        oids = list({order_id(platform_id, u.order_code) for u in updates})
        snapshots: dict[str, Any] = {}
        for chunk in _chunks(oids, 500):
            # Row locks (PostgreSQL; SQLite's write lock already serialises) so two concurrent
            # updates of one order cannot both merge into the same old snapshot.
            for snap in conn.execute(_SNAPSHOTS_FOR_UPDATE, {"oids": chunk}):
                snapshots[snap.order_id] = snap
        known: dict[str, KnownOrder] = {oid: self._known(snap) for oid, snap in snapshots.items()}
        changed: set[str] = set()
        buyer_changed: set[str] = set()
        per_ref: dict[int, Counter[str]] = {}
        merged: list[_Merged] = []
        for update, ref, prefix in entries:
            counts = per_ref.setdefault(ref, Counter())
            if update.event_key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(update.event_key)
            oid = order_id(platform_id, update.order_code)
            result = merge(known.get(oid), update)
            publish: KnownOrder | None = None
            if result.stale:
                counts["stale"] += 1
            elif not result.order.complete:
                if strict:
                    raise IncompleteOrder(
                        [
                            {
                                "field": f"{prefix}.{name}" if prefix else name,
                                "reason": "required for an order the gateway does not know yet",
                            }
                            for name in result.order.missing()
                        ]
                    )
                counts["held"] += 1
            else:
                publish = result.order
                counts["accepted"] += 1
            merged.append(
                _Merged(
                    update.event_key,
                    ref,
                    oid,
                    publish,
                    str(uuid.uuid4()) if publish is not None else None,
                )
            )
            known[oid] = result.order
            changed.add(oid)
            if update.buyer is not None:
                buyer_changed.add(oid)
        new_rows: list[dict[str, Any]] = []
        changed_rows: list[dict[str, Any]] = []
        for oid in changed:
            existing = snapshots.get(oid)
            row = self._snapshot_row(
                known[oid], now, encrypt_buyer=existing is None or oid in buyer_changed
            )
            if existing is None:
                # Core bulk insert: a backfill creates a thousand snapshots in one statement.
                new_rows.append({**row, "order_id": oid, "platform_id": platform_id})
            else:
                row.setdefault("buyer_enc", existing.buyer_enc)
                changed_rows.append({f"b_{k}": v for k, v in row.items()} | {"b_order_id": oid})
        if new_rows:
            _INSERT_SNAPSHOTS.execute(conn, new_rows)
        if changed_rows:
            conn.execute(_UPDATE_SNAPSHOT, changed_rows)
        return per_ref, merged

    def _record_events(
        self,
        conn: Connection,
        platform_id: str,
        kind: str,
        notify: bool,
        merged: list[_Merged],
        delivery_ids: MappingABC[int, int],
        now: datetime,
    ) -> None:
        """The marketplace events seen (the dedup keys) and the order events to publish."""
        if not merged:
            return
        _INSERT_EVENTS.execute(
            conn,
            [
                {
                    "platform_id": platform_id,
                    "event_key": m.event_key,
                    "delivery_id": delivery_ids[m.ref],
                    "order_id": m.oid,
                    "event_id": m.event_id,
                    "received_at": now,
                }
                for m in merged
            ],
        )
        add_many_to_outbox(
            conn,
            ORDERS_TOPIC,
            [
                (
                    m.oid,
                    self._event(
                        platform_id, kind, notify, m.oid, m.publish, delivery_ids[m.ref], m.event_id
                    ),
                )
                for m in merged
                if m.publish is not None and m.event_id is not None
            ],
        )

    # -- helpers -----------------------------------------------------------------------------

    def _known(self, snap: Any) -> KnownOrder:
        """The order as merged so far, from a snapshot row."""
        buyer = (
            Buyer.model_validate_json(self.cipher.decrypt(snap.buyer_enc))
            if snap.buyer_enc
            else None
        )
        return KnownOrder(
            order_code=snap.order_code,
            status=OrderStatus(snap.status),
            status_at=snap.status_at,
            buyer=buyer,
            seller=Seller.model_validate(snap.seller) if snap.seller else None,
            items=[OrderItem.model_validate(i) for i in snap.items]
            if snap.items is not None
            else None,
            total_amount=snap.total_amount,
            currency=snap.currency,
        )

    def _snapshot_row(
        self, order: KnownOrder, now: datetime, *, encrypt_buyer: bool
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "order_code": order.order_code,
            "status": order.status.value,
            "status_at": order.status_at,
            "seller": order.seller.model_dump() if order.seller else None,
            "items": [i.model_dump() for i in order.items] if order.items is not None else None,
            "total_amount": order.total_amount,
            "currency": order.currency,
            "updated_at": now,
        }
        if encrypt_buyer:
            row["buyer_enc"] = (
                self.cipher.encrypt(order.buyer.model_dump_json()) if order.buyer else None
            )
        return row

    @staticmethod
    def _event(
        platform_id: str,
        kind: str,
        notify: bool,
        oid: str,
        order: KnownOrder,
        delivery_id: int,
        event_id: str,
    ) -> CloudEvent[OrderStatusChangedV1]:
        assert order.buyer is not None
        assert order.seller is not None
        assert order.total_amount is not None
        return build_event(
            source=SOURCE,
            event_type="order.status_changed",
            subject=oid,
            event_id=event_id,
            data=OrderStatusChangedV1(
                order_id=oid,
                platform_id=platform_id,
                platform_kind=kind,
                order_code=order.order_code,
                status=order.status,
                status_at=order.status_at,
                buyer=order.buyer,
                seller=order.seller,
                items=order.items or [],
                total_amount=order.total_amount,
                currency=order.currency or "VND",
                delivery_id=str(delivery_id),
                status_notifications=notify,
            ),
        )


class GroupWriter:
    """One thread per process that stores whatever deliveries are waiting, together.

    While one group's transaction commits, the next requests queue up; the next group takes
    them all (up to `max_updates` order updates), so under load a commit (an fsync, and on
    SQLite the file's write lock) is shared by many requests instead of paid by each. Idle,
    a group is a single request and adds no wait. The thread ends after a quiet spell and
    starts again on the next submit.

    Requests announce themselves (`expect`) when they start reading a delivery, and the writer
    takes a group once none is half-way (all of them submitted or gone), waiting at most
    `gather_s`. Without that, under load the writer woke for each submit, took the one or two
    deliveries waiting and paid a transaction's fixed cost for them, which kept groups small
    and the writer busy: the profile showed groups of about five.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        max_updates: int = 1000,
        idle_s: float = 2.0,
        gather_s: float = 0.002,
    ) -> None:
        self.ingestor = ingestor
        # What stores the groups: this thread itself, or a store process (gateway/store.py).
        self.store: GroupStore = InProcessStore(ingestor)
        self.max_updates = max_updates
        self.idle_s = idle_s
        self.gather_s = gather_s
        self._queue: deque[tuple[Item, Future[Receipt]]] = deque()
        self._queued_updates = 0
        self._expected = 0
        self._cond = threading.Condition()
        self._running = False
        # Requests waiting on an event loop: settled together, one loop wake-up per group.
        self._waiting: dict[Future[Receipt], _Waiter] = {}
        # With a store process: what each event loop's requests submitted in its current turn.
        self._batches: dict[asyncio.AbstractEventLoop, Group] = {}

    def expect(self) -> None:
        """A delivery is being read and verified: a group may wait a moment for it."""
        with self._cond:
            self._expected += 1

    def unexpect(self) -> None:
        """An expected delivery will not be submitted (refused, or left to another path)."""
        with self._cond:
            self._expected -= 1
            if self._expected <= 0 and self._queue:
                self._cond.notify()

    def submit(
        self,
        pending: Item,
        *,
        expected: bool = False,
        waiter: _Waiter | None = None,
    ) -> Future[Receipt]:
        fut: Future[Receipt] = Future()
        with self._cond:
            if waiter is not None:
                self._waiting[fut] = waiter
            if expected:
                self._expected -= 1
            self._enqueue([(pending, fut)])
        return fut

    def _enqueue(self, items: Group) -> None:
        """Holding `_cond`: queue items for this writer's thread; start it, or let it take a
        group."""
        for item, fut in items:
            self._queue.append((item, fut))
            self._queued_updates += item.size
        if not self._running:
            self._running = True
            threading.Thread(target=self._run, name="gateway-group-writer", daemon=True).start()
        elif self._expected <= 0 or self._queued_updates >= self.max_updates:
            self._cond.notify()

    def submit_async(self, pending: Item, *, expected: bool = False) -> asyncio.Future[Receipt]:
        """`submit` for a coroutine: the answer arrives on its event loop with the group's.

        With a store process, the event loop sends its own groups: what its requests submitted
        in one turn goes out at the end of that turn (`_flush`), with no wait for this
        writer's thread to get the GIL, nor a gathering delay.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Receipt] = loop.create_future()
        if not self.store.sends_from_loop:
            self.submit(pending, expected=expected, waiter=(loop, waiter))
            return waiter
        fut: Future[Receipt] = Future()
        with self._cond:
            self._waiting[fut] = (loop, waiter)
            if expected:
                self._expected -= 1
        batch = self._batches.setdefault(loop, [])
        batch.append((pending, fut))
        if len(batch) == 1:
            loop.call_soon(self._flush, loop)
        return waiter

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: send its batch to the store now, or when an answer makes room."""
        batch = self._batches.get(loop)
        if not batch:
            return
        outcome = self.store.send_now(
            batch, self._settle, lambda: loop.call_soon_threadsafe(self._flush, loop)
        )
        if outcome == "wait":
            return  # kept (and growing): flushed again when the store answers a group
        del self._batches[loop]
        if outcome == "unavailable":
            # The store process is (re)starting: this writer's thread waits for it off the loop.
            with self._cond:
                self._enqueue(batch)

    def _settle(self, group: Group) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        with self._cond:
            for _p, fut in group:
                waiter = self._waiting.pop(fut, None)
                if waiter is not None:
                    by_loop.setdefault(waiter[0], []).append((waiter[1], fut))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_waiters, pairs)
            except RuntimeError:
                # That loop has closed (shutdown): nobody is waiting, the deliveries are stored;
                # the writer thread must live on for the other loops' requests.
                log.info("group settled after its event loop closed", extra={"size": len(pairs)})

    def _take(self) -> Group:
        with self._cond:
            if not self._queue:
                self._cond.wait(self.idle_s)
                if not self._queue:
                    self._running = False
                    return []
            deadline = time.monotonic() + self.gather_s
            while self._expected > 0 and self._queued_updates < self.max_updates:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            group: Group = []
            size = 0
            while self._queue and (not group or size + self._queue[0][0].size <= self.max_updates):
                item = self._queue.popleft()
                group.append(item)
                size += item[0].size
            self._queued_updates -= size
            return group

    def _run(self) -> None:
        while True:
            # A store process may still be busy with earlier groups: take the next one only
            # when it can be sent, so it gathers whatever arrives in the meantime.
            self.store.wait_for_room()
            group = self._take()
            if not group:
                return
            try:
                self.store.commit(group, self._settle)
            except BaseException as exc:
                # A store settles its groups itself; this is the net under it, so that no
                # request is ever left waiting.
                log.exception("group store failed", extra={"size": len(group)})
                fail_unsettled(group, exc)
                self._settle(group)


class GroupStore(Protocol):
    """Stores a group of deliveries, settles each future, then calls `settle(group)` once."""

    # True: event loops hand their groups to `send_now` themselves.
    sends_from_loop: bool

    def wait_for_room(self) -> None: ...

    def commit(self, group: Group, settle: Callable[[Group], None]) -> None: ...

    def send_now(
        self, group: Group, settle: Callable[[Group], None], on_room: Callable[[], object]
    ) -> str:
        """Without blocking: "sent"; "wait" (no room: `on_room` is called once when there
        is, and the caller keeps the group); or "unavailable" (nothing was done)."""
        ...


class InProcessStore:
    """The group writer's own thread runs the transaction (tests; `store_process` off)."""

    sends_from_loop = False

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    def wait_for_room(self) -> None:
        return None

    def send_now(
        self, group: Group, settle: Callable[[Group], None], on_room: Callable[[], object]
    ) -> str:
        return "unavailable"  # never asked: sends_from_loop is False

    def commit(self, group: Group, settle: Callable[[Group], None]) -> None:
        try:
            self.ingestor.commit_group(group)
        except BaseException as exc:  # noqa: BLE001 - never leave a request waiting
            fail_unsettled(group, exc)
        settle(group)


def fail_unsettled(group: Group, exc: BaseException) -> None:
    """Hand `exc` to every request of the group that has no answer yet."""
    for _item, fut in group:
        if not fut.done():
            fut.set_exception(exc)


@dataclass(frozen=True)
class _Merged:
    """An order update merged into its snapshot: `publish` is the order when it is published."""

    event_key: str
    ref: int  # its delivery: the index in a group, or the delivery's id
    oid: str
    publish: KnownOrder | None
    event_id: str | None


def _delivery_status(counts: MappingABC[str, int]) -> str:
    """A delivery's status from its updates' outcomes: the most consequential one present."""
    return next(
        (s for s in ("accepted", "held", "stale", "duplicate") if counts.get(s)), "accepted"
    )


def _insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert delivery rows in one statement; their ids in the rows' order."""
    keys = [row["delivery_key"] for row in rows]
    if all(keys):
        # Keys are unique here: commit_group stores later copies of a key after the first.
        returned = _INSERT_DELIVERIES.execute_returning(conn, rows, ("id", "delivery_key"))
        ids = dict((key, id_) for id_, key in returned)
        return [ids[key] for key in keys]
    return list(conn.execute(_INSERT_DELIVERIES_ORDERED, rows).scalars())


def _settle_waiters(pairs: list[_Settled]) -> None:
    """On the event loop: hand each stored delivery's outcome to the request waiting for it."""
    for waiter, fut in pairs:
        if waiter.done():  # the client went away; its delivery is stored all the same
            continue
        exc = fut.exception()
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(fut.result())


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# -- the inbound log, as operators and platforms read it -------------------------------------


def body_preview(cipher: DataCipher, row: InboundDelivery, limit: int = 4000) -> Any:
    """The stored body with personal data masked: never shown in clear through the API."""
    body = cipher.decrypt_bytes(row.body_enc)
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return scrub(body[:limit].decode("utf-8", errors="replace"))
    return scrub_value("body", doc)


def list_inbound(
    session: Session,
    platform_id: str,
    *,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> list[InboundDelivery]:
    q = select(InboundDelivery).where(InboundDelivery.platform_id == platform_id)
    if status:
        q = q.where(InboundDelivery.status == status)
    if before_id:
        q = q.where(InboundDelivery.id < before_id)
    return list(session.execute(q.order_by(InboundDelivery.id.desc()).limit(limit)).scalars())
