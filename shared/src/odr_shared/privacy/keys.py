"""Per-subject data keys, wrapped by a master key, kept in the owning service's database.

A data subject (a buyer, a neutral) is named by a keyed hash of their canonical phone, the same
in every service (`subject_for_phone`). Each service that writes a subject's personal data into
events keeps that subject's data key in its own `subject_keys` table, wrapped (AES-256-GCM) by the
service's master key (`PRIVACY_MASTER_KEY` or `PRIVACY_MASTER_KEY_FILE`: a KMS or secret store in
production). `KeyStore.destroy` deletes the subject's keys: every copy of what they sealed, in
every topic, outbox row and backup, can no longer be read (crypto-shredding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Index, LargeBinary, MetaData, String, Table, delete, insert, select
from sqlalchemy.orm import Session

from odr_shared.db import UTCDateTime, utcnow
from odr_shared.phone import normalize_phone
from odr_shared.settings import ServiceSettings

SUBJECT_KEYS_TABLE = "subject_keys"
_IN_CHUNK = 500
# An erased subject leaves a tombstone in `subject_keys` (kid "t_" + subject id, no key, the
# erasure's time): events about them written before it are not opened again here, even if a
# late copy arrives while the key's owner still holds the key (see Opener). Kept
# RETENTION_INBOX_DAYS, longer than any event can wait in a topic.
TOMBSTONE_PREFIX = "t_"


def tombstone_kid(subject_id: str) -> str:
    return TOMBSTONE_PREFIX + subject_id


def subject_keys_table(metadata: MetaData) -> Table:
    return Table(
        SUBJECT_KEYS_TABLE,
        metadata,
        Column("kid", String(40), primary_key=True),
        Column("subject_id", String(64), nullable=False),
        Column("wrapped_key", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Index("ix_subject_keys_subject_id", "subject_id"),
    )


_KEYS = subject_keys_table(MetaData())
_NOT_TOMBSTONE = ~_KEYS.c.kid.startswith(TOMBSTONE_PREFIX, autoescape=True)


def _stretch(material: str, purpose: bytes) -> bytes:
    return hmac.new(material.encode(), purpose, hashlib.sha256).digest()


def _dev_material(settings: ServiceSettings) -> str:
    # The newest data-encryption material: development and tests only (production refuses
    # to start without the privacy keys, see ServiceSettings).
    return next(k.strip() for k in settings.data_encryption_key.split(",") if k.strip())


def subject_key_material(settings: ServiceSettings) -> bytes:
    material = settings.privacy_subject_key or _dev_material(settings)
    return _stretch(material, b"odr-privacy-subject")


def subject_for_phone(phone: str, settings: ServiceSettings | bytes) -> str:
    """The data subject id of whoever owns this phone: the same in every service.

    Raises `odr_shared.phone.InvalidPhone` for something that is not a phone number.
    """
    key = settings if isinstance(settings, bytes) else subject_key_material(settings)
    canonical = normalize_phone(phone)
    return "sp_" + hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:32]


def master_materials(settings: ServiceSettings) -> list[str]:
    raw = settings.privacy_master_key
    if not raw and settings.privacy_master_key_file:
        raw = Path(settings.privacy_master_key_file).read_text().strip()
    if not raw:
        raw = _dev_material(settings)
    materials = [m.strip() for m in raw.replace("\n", ",").split(",") if m.strip()]
    if not materials:
        raise ValueError("no privacy master key configured")
    return materials


class MasterKey:
    """Wraps data keys: the first material wraps, every material unwraps (rotation)."""

    def __init__(self, materials: Iterable[str]) -> None:
        keys = [_stretch(m, b"odr-privacy-master") for m in materials]
        if not keys:
            raise ValueError("no privacy master key configured")
        # A wrapped key names its master by a short fingerprint, so unwrapping tries one key.
        self._keys = {hashlib.sha256(k).digest()[:4]: AESGCM(k) for k in keys}
        self._current = hashlib.sha256(keys[0]).digest()[:4]

    def wrap(self, kid: str, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return (
            self._current + nonce + self._keys[self._current].encrypt(nonce, data_key, kid.encode())
        )

    def unwrap(self, kid: str, wrapped: bytes) -> bytes:
        master = self._keys.get(bytes(wrapped[:4]))
        if master is None:
            raise ValueError(f"subject key {kid} is wrapped by a master key not configured here")
        try:
            return master.decrypt(bytes(wrapped[4:16]), bytes(wrapped[16:]), kid.encode())
        except InvalidTag as exc:
            raise ValueError(f"subject key {kid} does not unwrap: tampered or wrong key") from exc


@dataclass(frozen=True)
class SubjectKey:
    kid: str
    subject_id: str
    key: bytes


class KeyStore:
    """A service's subject keys, in its own database, used inside the caller's transaction."""

    def __init__(self, master: MasterKey) -> None:
        self.master = master

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KeyStore:
        return cls(MasterKey(master_materials(settings)))

    def active_keys(self, session: Session, subject_ids: Iterable[str]) -> dict[str, SubjectKey]:
        """Each subject's key, made now for a subject that has none.

        Two transactions that make a first key for one subject at once both keep theirs: a
        subject may hold several keys, and erasure destroys them all.
        """
        wanted = list(dict.fromkeys(subject_ids))
        found: dict[str, SubjectKey] = {}
        for i in range(0, len(wanted), _IN_CHUNK):
            rows = session.execute(
                select(_KEYS.c.kid, _KEYS.c.subject_id, _KEYS.c.wrapped_key)
                .where(_KEYS.c.subject_id.in_(wanted[i : i + _IN_CHUNK]), _NOT_TOMBSTONE)
                .order_by(_KEYS.c.created_at, _KEYS.c.kid)
            ).all()
            for kid, subject_id, wrapped in rows:
                if subject_id not in found:
                    found[subject_id] = SubjectKey(
                        kid, subject_id, self.master.unwrap(kid, wrapped)
                    )
        missing = [s for s in wanted if s not in found]
        if missing:
            now = utcnow()
            rows_in = []
            for subject_id in missing:
                kid = "k_" + uuid.uuid4().hex
                key = AESGCM.generate_key(bit_length=256)
                found[subject_id] = SubjectKey(kid, subject_id, key)
                rows_in.append(
                    {
                        "kid": kid,
                        "subject_id": subject_id,
                        "wrapped_key": self.master.wrap(kid, key),
                        "created_at": now,
                    }
                )
            session.execute(insert(_KEYS), rows_in)
        return found

    def keys_by_id(self, session: Session, kids: Iterable[str]) -> dict[str, SubjectKey]:
        """The keys among `kids` that still exist; a missing one was destroyed (or never was)."""
        wanted = list(dict.fromkeys(kids))
        found: dict[str, SubjectKey] = {}
        for i in range(0, len(wanted), _IN_CHUNK):
            rows = session.execute(
                select(_KEYS.c.kid, _KEYS.c.subject_id, _KEYS.c.wrapped_key).where(
                    _KEYS.c.kid.in_(wanted[i : i + _IN_CHUNK]), _NOT_TOMBSTONE
                )
            ).all()
            for kid, subject_id, wrapped in rows:
                found[kid] = SubjectKey(kid, subject_id, self.master.unwrap(kid, wrapped))
        return found

    def destroy(self, session: Session, subject_id: str) -> int:
        """Delete every key of the subject: what they sealed is unreadable from now on.

        Leaves the subject's tombstone (the erasure's time), so that a late copy of an event
        written before it is not opened here with a key another service still holds.
        """
        result = session.execute(
            delete(_KEYS).where(_KEYS.c.subject_id == subject_id, _NOT_TOMBSTONE)
        )
        session.execute(delete(_KEYS).where(_KEYS.c.kid == tombstone_kid(subject_id)))
        session.execute(
            insert(_KEYS).values(
                kid=tombstone_kid(subject_id),
                subject_id=subject_id,
                wrapped_key=b"",
                created_at=utcnow(),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def holds(self, session: Session, subject_id: str) -> bool:
        row = session.execute(
            select(_KEYS.c.kid).where(_KEYS.c.subject_id == subject_id, _NOT_TOMBSTONE).limit(1)
        ).first()
        return row is not None

    def erased_at(self, session: Session, subject_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these subjects was last erased here (those that ever were)."""
        kids = [tombstone_kid(s) for s in dict.fromkeys(subject_ids)]
        out: dict[str, datetime] = {}
        for i in range(0, len(kids), _IN_CHUNK):
            for subject_id, at in session.execute(
                select(_KEYS.c.subject_id, _KEYS.c.created_at).where(
                    _KEYS.c.kid.in_(kids[i : i + _IN_CHUNK])
                )
            ):
                out[subject_id] = at
        return out


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str) -> bytes:
    key = base64.urlsafe_b64decode(text.encode())
    if len(key) != 32:
        raise ValueError("a subject key is 32 bytes")
    return key
