"""The inbox: ids of events a consumer group has applied, written in the effect's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.orm import Session

from odr_shared.db import UTCDateTime, utcnow

INBOX_TABLE = "inbox_events"


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        INBOX_TABLE,
        metadata,
        Column("consumer_group", String(100), primary_key=True),
        Column("event_id", String(100), primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("processed_at", UTCDateTime(), nullable=False, default=utcnow),
    )


_inbox_metadata = MetaData()
_INBOX = inbox_table(_inbox_metadata)


def already_processed(session: Session, group: str, event_id: str) -> bool:
    row = session.execute(
        select(_INBOX.c.event_id).where(
            _INBOX.c.consumer_group == group, _INBOX.c.event_id == event_id
        )
    ).first()
    return row is not None


def mark_processed(session: Session, group: str, event_id: str, event_type: str) -> None:
    # The primary key turns a concurrent duplicate into an IntegrityError: the transaction
    # (and its effect) rolls back and the retry then sees the event as processed.
    session.execute(
        insert(_INBOX).values(
            consumer_group=group, event_id=event_id, event_type=event_type, processed_at=utcnow()
        )
    )


# Well under every backend's bound-parameter limit (SQLite's is 32766 since 3.32, 999 before).
_IN_CHUNK = 500


def processed_among(session: Session, group: str, event_ids: Iterable[str]) -> set[str]:
    """The ids among `event_ids` this group has already applied."""
    ids = list(dict.fromkeys(event_ids))
    found: set[str] = set()
    for i in range(0, len(ids), _IN_CHUNK):
        found.update(
            session.execute(
                select(_INBOX.c.event_id).where(
                    _INBOX.c.consumer_group == group,
                    _INBOX.c.event_id.in_(ids[i : i + _IN_CHUNK]),
                )
            ).scalars()
        )
    return found


def mark_many_processed(session: Session, group: str, events: Sequence[tuple[str, str]]) -> None:
    """Record (event_id, event_type) pairs in one executemany; see mark_processed on duplicates."""
    if not events:
        # An insert with an empty parameter list would run once with no values at all.
        return
    now = utcnow()
    session.execute(
        insert(_INBOX),
        [
            {
                "consumer_group": group,
                "event_id": event_id,
                "event_type": event_type,
                "processed_at": now,
            }
            for event_id, event_type in events
        ],
    )
