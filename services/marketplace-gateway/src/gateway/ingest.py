"""Inbound use cases: verify, map, merge and store deliveries; publish via the outbox; replay."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Table, any_, bindparam, insert, select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects.postgresql import ARRAY
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
from gateway.privacy import Subjects, resolve_redaction
from gateway.settings import GatewaySettings
from gateway.signatures import SignatureError
from odr_shared.crypto import DataCipher
from odr_shared.db import BulkInsert, utcnow
from odr_shared.events import (
    ORDERS_TOPIC,
    PRIVACY_TOPIC,
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
from odr_shared.privacy import KeyStore
from odr_shared.problems import Problem, not_found
from odr_shared.ratelimit import LeasedLimiter, Limit

log = logging.getLogger(__name__)

# The tables behind the models, for Core bulk statements on the hot path.
_DELIVERIES: Table = InboundDelivery.__table__  # type: ignore[assignment]
_EVENTS: Table = InboundEvent.__table__  # type: ignore[assignment]
_SNAPSHOTS: Table = OrderSnapshot.__table__  # type: ignore[assignment]
# Built once: constructing a statement costs about as much as running it on SQLite.


def _among(column: Any, name: str) -> dict[str, Any]:
    """`column IN (...)` per dialect: on PostgreSQL one array parameter (`= ANY`), so the
    statement's text is the same whatever the count and the driver parses and prepares it once;
    SQLite takes the expanded list."""
    return {
        "postgresql": column == any_(bindparam(name, type_=ARRAY(column.type))),
        "sqlite": column.in_(bindparam(name, expanding=True)),
    }


_SEEN_DELIVERIES = {
    dialect: select(
        _DELIVERIES.c.id,
        _DELIVERIES.c.delivery_key,
        _DELIVERIES.c.status,
        _DELIVERIES.c.event_id,
        _DELIVERIES.c.summary,
    ).where(_DELIVERIES.c.platform_id == bindparam("platform_id"), among)
    for dialect, among in _among(_DELIVERIES.c.delivery_key, "keys").items()
}
_SEEN_EVENTS = {
    dialect: select(_EVENTS.c.event_key).where(
        _EVENTS.c.platform_id == bindparam("platform_id"), among
    )
    for dialect, among in _among(_EVENTS.c.event_key, "keys").items()
}
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
        "subject_id",
    ),
)
_INSERT_DELIVERIES_ORDERED = insert(_DELIVERIES).returning(
    _DELIVERIES.c.id, sort_by_parameter_order=True
)
_INSERT_EVENTS = BulkInsert(
    _EVENTS, ("platform_id", "event_key", "delivery_id", "order_id", "event_id", "received_at")
)
_SNAPSHOTS_FOR_UPDATE = {
    dialect: select(_SNAPSHOTS).where(among).with_for_update()
    for dialect, among in _among(_SNAPSHOTS.c.order_id, "oids").items()
}
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
    "subject_id",
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


@dataclass
class Inbound:
    """A webhook or a signed batch as received; verified and mapped where it is stored."""

    platform_id: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    batch: bool = False
    now: float | None = None  # the clock signatures are checked against (tests)

    @property
    def size(self) -> int:
        # Before it is mapped: a batch counts as the most updates it may carry.
        return 1000 if self.batch else 1


@dataclass
class Prepared:
    """A delivery verified and mapped: what a group stores."""

    platform_id: str
    kind: str
    notify: bool
    mapping: Mapping
    headers: dict[str, str]
    body: bytes
    source: str  # webhook | batch | api | replay
    ack_status: int
    strict: bool  # an incomplete new order is refused (422), not held
    field_prefix: str
    replay_of: int | None = None
    limited: bool = True  # counts against the platform's rate limit

    @property
    def size(self) -> int:
        return max(1, len(self.mapping.updates))

    def refuse(self, problem: Problem, error: str) -> Refused:
        return Refused(
            self.platform_id,
            self.kind,
            self.headers,
            self.body,
            self.source,
            problem,
            error,
            self.replay_of,
            self.limited,
        )


@dataclass
class Refused:
    """A delivery refused (signature, mapping, an incomplete new order): kept as a rejected row
    for inspection and replay, and answered with `problem` naming that row."""

    platform_id: str
    kind: str
    headers: dict[str, str]
    body: bytes
    source: str
    problem: Problem
    error: str
    replay_of: int | None = None
    limited: bool = True

    size = 1

    def answer(self, delivery_id: int) -> Problem:
        p = self.problem
        return Problem(
            p.status,
            p.title,
            p.detail,
            type_=p.type,
            headers=p.headers,
            **p.extensions,
            delivery_id=delivery_id,
        )


# What the store path takes, and what it answers for each.
Item = Inbound | Prepared | Refused
Outcome = Receipt | Problem


class IncompleteOrder(Exception):
    """A strict delivery's update is for an order the gateway does not know in full yet."""

    def __init__(self, errors: list[dict[str, str]], ref: int) -> None:
        super().__init__(errors[0]["reason"])
        self.errors = errors
        self.ref = ref


def _problem_for(errors: list[dict[str, str]], http_status: int) -> Problem:
    first = errors[0]
    title = "Bad Request" if http_status == 400 else "Unprocessable Content"
    return Problem(http_status, title, f"{first['field']}: {first['reason']}", errors=errors)


def answer(outcome: Outcome) -> Receipt:
    """A stored delivery's receipt, or its problem raised."""
    if isinstance(outcome, Problem):
        raise outcome
    return outcome


class Ingestor:
    """Receives deliveries for every platform kind; one instance per process.

    Every route ends in `store`: single webhooks and batches (gathered into groups by
    `gateway.intake.Intake`), full orders through the REST API and operators' replays (groups
    of one). A group is one transaction: one commit (one fsync) for every delivery in it.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        cipher: DataCipher,
        settings: GatewaySettings,
        keys: KeyStore | None = None,
    ) -> None:
        self.factory = factory
        self.engine: Engine = factory.kw["bind"]
        self.cipher = cipher
        self.settings = settings
        # Buyers' data subjects, and the key store their order events are sealed with.
        self.subjects = Subjects(settings, keys or KeyStore.from_settings(settings))
        self.limiter = LeasedLimiter(
            self.engine,
            Limit("webhooks", settings.webhook_rate_limit, settings.webhook_rate_window_s),
        )
        self._platforms: dict[str, tuple[float, PlatformConfig, str, bool]] = {}

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

    def forget_platform(self, platform_id: str) -> None:
        self._platforms.pop(platform_id, None)

    # -- verifying and mapping ---------------------------------------------------------------

    def prepare(self, item: Inbound) -> Prepared | Refused:
        """Verify and map a delivery: the one verification path, for every platform kind.

        Raises a problem when there is nothing to keep a refusal against (no such platform)
        or the route does not take the platform's kind; a refused delivery is returned, to be
        kept and counted like any other.
        """
        cfg, kind, notify = self.platform_settings(item.platform_id)
        if item.batch and kind != "standard":
            raise Problem(
                400,
                "Bad Request",
                f"the batch endpoint takes standard-kind platforms; this one is {kind}",
            )
        adapter = ADAPTERS[kind]
        kept = kept_headers(item.headers)
        source = "batch" if item.batch else "webhook"
        try:
            adapter.verify(cfg, item.headers, item.body, now=item.now)
        except SignatureError as exc:
            log.warning(
                "webhook signature rejected",
                extra={"platform_id": item.platform_id, "kind": kind, "reason": str(exc)},
            )
            reason = f"signature rejected: {exc}"
            problem = Problem(401, "Unauthorized", reason)
            return Refused(item.platform_id, kind, kept, item.body, source, problem, reason)
        try:
            if item.batch:
                assert isinstance(adapter, StandardAdapter)
                mapping = adapter.map_batch(item.headers, item.body)
            else:
                mapping = adapter.map(cfg, item.headers, item.body)
        except MappingError as exc:
            problem = _problem_for(exc.errors, exc.http_status)
            error = json.dumps(exc.errors)
            return Refused(item.platform_id, kind, kept, item.body, source, problem, error)
        prefix = "events.{i}.data" if item.batch else ("data" if kind == "standard" else "")
        return Prepared(
            item.platform_id,
            kind,
            notify,
            mapping,
            kept,
            item.body,
            source=source,
            ack_status=adapter.ack_status,
            strict=kind == "standard",
            field_prefix=prefix,
        )

    # -- entry points besides the intake -----------------------------------------------------

    def receive(
        self,
        platform_id: str,
        headers: MappingABC[str, str],
        body: bytes,
        *,
        batch: bool = False,
        now: float | None = None,
    ) -> Receipt:
        """One delivery stored on its own, as a group of one (tools and tests)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        return answer(self.store([Inbound(platform_id, lowered, body, batch, now)])[0])

    def receive_order(
        self, platform_id: str, order: CanonicalOrder, idempotency_key: str | None
    ) -> Receipt:
        """A canonical ORDER through the REST API (platform token): full orders for any kind."""
        with self.factory() as session:
            platform = get_platform(session, platform_id)
            kind, notify = platform.kind, platform.status_notifications
        mapping = Mapping(
            delivery_key=f"api:{idempotency_key}" if idempotency_key else "",
            updates=[order.to_update()],
        )
        item = Prepared(
            platform_id,
            kind,
            notify,
            mapping,
            {"idempotency-key": idempotency_key} if idempotency_key else {},
            order.model_dump_json(exclude_none=True).encode(),
            source="api",
            ack_status=200,
            strict=True,
            field_prefix="",
        )
        return answer(self.store([item])[0])

    def replay(self, platform_id: str, delivery_id: int) -> Receipt:
        """Map a stored delivery again, without its signature (an operator vouches for it)."""
        with self.factory() as session:
            row = session.get(InboundDelivery, delivery_id)
            if row is None or row.platform_id != platform_id:
                raise not_found("delivery")
            if not row.body_enc:
                raise Problem(
                    409, "Conflict", "the delivery's body was erased: there is nothing to replay"
                )
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
        prefix = "events.{i}.data" if source == "batch" else ("data" if kind == "standard" else "")
        prepared = Prepared(
            platform_id,
            kind,
            notify,
            Mapping(""),
            headers,
            body,
            source="replay",
            ack_status=200,
            strict=kind == "standard" or source == "api",
            field_prefix=prefix,
            replay_of=delivery_id,
            limited=False,  # operators' replays do not spend the platform's allowance
        )
        try:
            if source == "api":
                order = validate(CanonicalOrder, load_object(body))
                mapping = Mapping("", updates=[order.to_update()])
            elif source == "batch":
                assert isinstance(adapter, StandardAdapter)
                mapping = adapter.map_batch(headers, body)
            else:
                mapping = adapter.map(cfg, headers, body)
            prepared.mapping = replace(mapping, delivery_key="")
            item: Item = prepared
        except (MappingError, KeyError) as exc:
            errors = (
                exc.errors
                if isinstance(exc, MappingError)
                else [{"field": str(exc), "reason": "missing from the stored delivery"}]
            )
            status = exc.http_status if isinstance(exc, MappingError) else 422
            item = prepared.refuse(_problem_for(errors, status), json.dumps(errors))
        return answer(self.store([item])[0])

    def reject_oversize(
        self, platform_id: str, headers: MappingABC[str, str], size: int, limit: int
    ) -> NoReturn:
        """A body over the limit: kept as a rejected delivery without its body, answered 413."""
        _cfg, kind, _notify = self.platform_settings(platform_id)
        # The body itself is not kept: storing what we refuse to read would defeat the limit.
        problem = Problem(413, "Content Too Large", f"body exceeds {limit} bytes")
        error = f"body of {size}+ bytes exceeds {limit}"
        lowered = {k.lower(): v for k, v in headers.items()}
        refused = Refused(platform_id, kind, kept_headers(lowered), b"", "webhook", problem, error)
        outcome = self.store([refused])[0]
        assert isinstance(outcome, Problem)
        raise outcome

    # -- the store path ----------------------------------------------------------------------

    def store(self, items: Sequence[Item]) -> list[Outcome]:
        """Store a group of deliveries in one transaction; an outcome for each, in order.

        Each outcome holds only once the transaction holding its delivery and outbox rows has
        committed. Deliveries are verified and mapped first (`Inbound`), then counted against
        their platform's rate limit outside the transaction (`LeasedLimiter`: writers of one
        platform never queue on a shared row). Refusals are kept in the same transaction. A
        strict delivery with an incomplete new order is refused on its own and the group
        stored again without it; a concurrent twin winning a unique key makes the group run
        again, when it sees the twin's rows.
        """
        out: list[Outcome | None] = [None] * len(items)
        ready: dict[int, Prepared | Refused] = {}
        for i, item in enumerate(items):
            if isinstance(item, Inbound):
                try:
                    ready[i] = self.prepare(item)
                except Problem as problem:
                    out[i] = problem
            else:
                ready[i] = item
        self._limit(ready, out)
        clashes = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    stored = self._store_group(conn, ready)
                break
            except IncompleteOrder as exc:
                held = ready[exc.ref]
                assert isinstance(held, Prepared)
                ready[exc.ref] = held.refuse(_problem_for(exc.errors, 422), json.dumps(exc.errors))
            except IntegrityError:
                clashes += 1
                if clashes == 3:
                    raise
        for i, outcome in stored.items():
            kind = ready[i].kind
            if isinstance(outcome, Problem):
                INBOUND_DELIVERIES.labels(kind, "rejected").inc()
            else:
                INBOUND_DELIVERIES.labels(kind, outcome.status).inc()
            out[i] = outcome
        assert all(o is not None for o in out)
        return [o for o in out if o is not None]

    def _limit(self, ready: dict[int, Prepared | Refused], out: list[Outcome | None]) -> None:
        """Count the group against each platform's limit, in arrival order; answer 429 to the
        deliveries beyond it (not stored, as a marketplace will send them again)."""
        per_platform: dict[str, list[int]] = {}
        for i, item in ready.items():
            if item.limited:
                per_platform.setdefault(item.platform_id, []).append(i)
        for platform_id, idxs in per_platform.items():
            allowed = self.limiter.take(platform_id, len(idxs))
            for i in idxs[allowed:]:
                out[i] = self.limiter.too_many()
                del ready[i]

    def _store_group(
        self, conn: Connection, ready: dict[int, Prepared | Refused]
    ) -> dict[int, Outcome]:
        now = utcnow()
        out: dict[int, Outcome] = {}
        refused = [(i, r) for i, r in ready.items() if isinstance(r, Refused)]
        if refused:
            rows = [
                {
                    "platform_id": r.platform_id,
                    "delivery_key": None,
                    "source": r.source,
                    "http_status": r.problem.status,
                    "headers": r.headers,
                    "body_enc": self.cipher.encrypt_bytes(r.body),
                    "body_size": len(r.body),
                    "replay_of": r.replay_of,
                    "received_at": now,
                    "status": "rejected",
                    "error": r.error[:4000],
                    "summary": None,
                    "order_id": None,
                    "event_id": None,
                    "subject_id": None,
                }
                for _i, r in refused
            ]
            for (i, r), delivery_id in zip(refused, _insert_deliveries(conn, rows), strict=True):
                out[i] = r.answer(delivery_id)
        groups: dict[tuple[str, str, bool, bool], list[int]] = {}
        for i, p in ready.items():
            if isinstance(p, Prepared):
                groups.setdefault((p.platform_id, p.kind, p.notify, p.strict), []).append(i)
        prepared = {i: p for i, p in ready.items() if isinstance(p, Prepared)}
        for (platform_id, kind, notify, strict), idxs in groups.items():
            self._store_platform_group(
                conn, platform_id, kind, notify, strict, prepared, idxs, out, now
            )
        return out

    def _store_platform_group(
        self,
        conn: Connection,
        platform_id: str,
        kind: str,
        notify: bool,
        strict: bool,
        pendings: MappingABC[int, Prepared],
        idxs: list[int],
        out: dict[int, Outcome],
        now: datetime,
    ) -> None:
        """One platform's deliveries of a group: duplicates, merges, delivery rows, outbox."""
        keys = list({k for i in idxs if (k := pendings[i].mapping.delivery_key)})
        existing: dict[str, Any] = {}
        for chunk in _chunks(keys, 500):
            params = {"platform_id": platform_id, "keys": chunk}
            for found in conn.execute(_SEEN_DELIVERIES[conn.dialect.name], params):
                existing[found.delivery_key] = found
        fresh: list[int] = []
        # A key twice in one group: the later copies answer as duplicates of the first.
        first: dict[str, int] = {}
        twins: list[tuple[int, int]] = []
        for i in idxs:
            p = pendings[i]
            key = p.mapping.delivery_key
            row = existing.get(key) if key else None
            if row is None:
                if key and key in first:
                    twins.append((i, first[key]))
                    continue
                if key:
                    first[key] = i
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
            if p.mapping.ignored is None and p.mapping.redaction is None:
                entries.extend(
                    (u, i, p.field_prefix.format(i=j)) for j, u in enumerate(p.mapping.updates)
                )
        per_ref, merged, ref_subjects = self._merge_updates(
            conn, platform_id, entries, now, strict=strict
        )
        # Data-subject requests of the marketplace: resolved to the subject and its orders here,
        # published once their delivery rows have ids.
        requests = {
            i: resolve_redaction(conn, platform_id, redaction, self.subjects)
            for i in fresh
            if (redaction := pendings[i].mapping.redaction) is not None
        }
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
                "replay_of": p.replay_of,
                "received_at": now,
            }
            if p.mapping.ignored is not None:
                row.update(status="ignored", error=p.mapping.ignored, summary=None)
                row.update(order_id=None, event_id=None, subject_id=None)
            elif i in requests:
                resolved = requests[i]
                oids = sorted({o for r in resolved for o in r.order_ids})
                subjects = {r.subject_id for r in resolved}
                row.update(status="accepted", error=None, summary={"redaction": len(resolved)})
                row.update(
                    order_id=oids[0] if len(oids) == 1 else None,
                    event_id=resolved[0].event_id,
                    subject_id=subjects.pop() if len(subjects) == 1 else None,
                )
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
                # One buyer's delivery is found by its subject; a batch of several buyers'
                # orders through its inbound events.
                subjects = {s for s in ref_subjects.get(i, ()) if s is not None}
                row["subject_id"] = subjects.pop() if len(subjects) == 1 else None
            rows.append(row)
        ids = _insert_deliveries(conn, rows)
        delivery_ids = dict(zip(fresh, ids, strict=True))
        self._record_events(conn, platform_id, kind, notify, merged, delivery_ids, now)
        if requests:
            add_many_to_outbox(
                conn,
                PRIVACY_TOPIC,
                [
                    (r.subject_id or platform_id, r.event(platform_id, delivery_ids[i]))
                    for i, resolved in requests.items()
                    for r in resolved
                ],
            )
        for i, delivery_id, row in zip(fresh, ids, rows, strict=True):
            out[i] = Receipt(
                pendings[i].ack_status,
                delivery_id,
                row["status"],
                duplicate=row["status"] == "duplicate",
                event_ids=event_ids.get(i, []),
                summary=dict(row["summary"] or {}),
            )
        for i, of in twins:
            stored = out[of]
            assert isinstance(stored, Receipt)
            out[i] = replace(stored, http_status=pendings[i].ack_status, duplicate=True)

    def _merge_updates(
        self,
        conn: Connection,
        platform_id: str,
        entries: list[tuple[OrderUpdate, int, str]],
        now: datetime,
        *,
        strict: bool,
    ) -> tuple[dict[int, Counter[str]], list[_Merged], dict[int, set[str | None]]]:
        """Dedup by marketplace event, merge each update into its order snapshot, save snapshots.

        `entries` are (update, a reference to its delivery, the field prefix naming it in that
        delivery), in arrival order, from one delivery or from a group of them. Set-based (one
        SELECT for seen events, one for snapshots, bulk inserts) so a thousand events are one
        short transaction. Needs no delivery id: returns the counts per reference, every
        update that was not a duplicate, with an event id drawn for each one to publish, and the
        data subjects (buyers) of each reference's orders.
        """
        updates = [u for u, _d, _p in entries]
        keys = list({u.event_key for u in updates})
        seen: set[str] = set()
        for chunk in _chunks(keys, 500):
            seen.update(
                conn.execute(
                    _SEEN_EVENTS[conn.dialect.name], {"platform_id": platform_id, "keys": chunk}
                ).scalars()
            )
        oids = list({order_id(platform_id, u.order_code) for u in updates})
        snapshots: dict[str, Any] = {}
        for chunk in _chunks(oids, 500):
            # Row locks (PostgreSQL; SQLite's write lock already serialises) so two concurrent
            # updates of one order cannot both merge into the same old snapshot.
            for snap in conn.execute(_SNAPSHOTS_FOR_UPDATE[conn.dialect.name], {"oids": chunk}):
                snapshots[snap.order_id] = snap
        known: dict[str, KnownOrder] = {oid: self._known(snap) for oid, snap in snapshots.items()}
        changed: set[str] = set()
        buyer_changed: set[str] = set()
        per_ref: dict[int, Counter[str]] = {}
        ref_subjects: dict[int, set[str | None]] = {}
        merged: list[_Merged] = []
        subject_of = self.subjects.of_buyer
        for update, ref, prefix in entries:
            counts = per_ref.setdefault(ref, Counter())
            if update.event_key in seen:
                counts["duplicate"] += 1
                before = known.get(order_id(platform_id, update.order_code))
                ref_subjects.setdefault(ref, set()).add(
                    subject_of(update.buyer or (before.buyer if before else None))
                )
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
                        ],
                        ref,
                    )
                counts["held"] += 1
            else:
                publish = result.order
                counts["accepted"] += 1
            subject = subject_of(result.order.buyer)
            ref_subjects.setdefault(ref, set()).add(subject)
            merged.append(
                _Merged(
                    update.event_key,
                    ref,
                    oid,
                    publish,
                    str(uuid.uuid4()) if publish is not None else None,
                    subject,
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
            row["subject_id"] = subject_of(known[oid].buyer)
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
        return per_ref, merged, ref_subjects

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
        published = [m for m in merged if m.publish is not None and m.event_id is not None]
        if not published:
            return
        events = [
            (
                self._event(
                    platform_id, kind, notify, m.oid, m.publish, delivery_ids[m.ref], m.event_id
                ),
                m.subject,
            )
            for m in published
            if m.publish is not None and m.event_id is not None
        ]
        # The buyer leaves sealed under its subject's key (one key query for the group), in
        # this transaction: neither the outbox row nor the Kafka message holds it in clear.
        sealed = self.subjects.seal_many(conn, events)
        add_many_to_outbox(
            conn, ORDERS_TOPIC, [(m.oid, ev) for m, ev in zip(published, sealed, strict=True)]
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


@dataclass(frozen=True)
class _Merged:
    """An order update merged into its snapshot: `publish` is the order when it is published."""

    event_key: str
    ref: int  # its delivery: the index in a group, or the delivery's id
    oid: str
    publish: KnownOrder | None
    event_id: str | None
    subject: str | None  # the buyer's data subject, when the buyer is known


def _delivery_status(counts: MappingABC[str, int]) -> str:
    """A delivery's status from its updates' outcomes: the most consequential one present."""
    return next(
        (s for s in ("accepted", "held", "stale", "duplicate") if counts.get(s)), "accepted"
    )


def _insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert delivery rows in one statement; their ids in the rows' order."""
    keys = [row["delivery_key"] for row in rows]
    if all(keys):
        # Keys are unique here: a group answers later copies of a key from the first.
        returned = _INSERT_DELIVERIES.execute_returning(conn, rows, ("id", "delivery_key"))
        ids = dict((key, id_) for id_, key in returned)
        return [ids[key] for key in keys]
    return list(conn.execute(_INSERT_DELIVERIES_ORDERED, rows).scalars())


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# -- the inbound log, as operators and platforms read it -------------------------------------


def body_preview(cipher: DataCipher, row: InboundDelivery, limit: int = 4000) -> Any:
    """The stored body with personal data masked: never shown in clear through the API."""
    if not row.body_enc:
        return None  # erased (privacy.erasure_requested) or past its retention
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
