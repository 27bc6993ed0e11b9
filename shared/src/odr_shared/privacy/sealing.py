"""Seal an event's personal fields under its subject's key (producers), open them (consumers).

The sealed form of a v1 event is its v2: the same type, `dataschema ...:v2`, the non-personal
fields as in v1, `subject_id` in clear and `sealed = {kid, owner, ct}` where `ct` is
AES-256-GCM over the JSON of the personal fields, bound (associated data) to the event's id and
the key's id, so a sealed block cannot be moved onto another event.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from odr_shared.events import (
    CaseEventV1,
    CloudEvent,
    MediationEventV1,
    NotificationCommandV1,
    OrderStatusChangedV1,
    Sealed,
    SealedPayloadV2,
    build_event,
    data_model_for,
)
from odr_shared.privacy.keys import KeyStore, SubjectKey

# What of each payload is personal data: names, phones, emails and free text about a person.
PERSONAL_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {
    OrderStatusChangedV1: ("buyer",),
    CaseEventV1: ("consumer", "desired_outcome", "reason", "details"),
    MediationEventV1: ("neutral_contact", "reason", "proposal", "decision", "details"),
    NotificationCommandV1: ("recipient", "params"),
}


class SealError(ValueError):
    """A sealed block that does not open with the key it names (tampered, or the wrong key)."""


def _aad(event_id: str, kid: str) -> bytes:
    return f"{event_id}|{kid}".encode()


def is_sealed(event: CloudEvent[Any]) -> bool:
    return isinstance(event.data, SealedPayloadV2)


def seal(event: CloudEvent[Any], key: SubjectKey, owner: str) -> CloudEvent[SealedPayloadV2]:
    """The v2 form of a v1 event: its personal fields encrypted under `key`."""
    fields = PERSONAL_FIELDS.get(type(event.data))
    if fields is None:
        raise TypeError(f"{type(event.data).__name__} has no personal fields to seal")
    data = event.data.model_dump(mode="json")
    personal = {f: data.pop(f) for f in fields if f in data}
    data["subject_id"] = key.subject_id
    nonce = os.urandom(12)
    ct = AESGCM(key.key).encrypt(
        nonce,
        json.dumps(personal, separators=(",", ":"), ensure_ascii=False).encode(),
        _aad(event.id, key.kid),
    )
    data["sealed"] = Sealed(
        kid=key.kid, owner=owner, ct=base64.urlsafe_b64encode(nonce + ct).decode()
    )
    return build_event(
        source=event.source,
        event_type=event.type,
        subject=event.subject or key.subject_id,
        data=SealedPayloadV2.model_validate(data),
        version=2,
        event_id=event.id,
        time=event.time,
    )


def unsealed(event: CloudEvent[SealedPayloadV2], key: bytes | None) -> CloudEvent[BaseModel] | None:
    """The v1 event back: with its personal fields when `key` opens them, without them otherwise.

    Without the key (none given: this consumer is not to see them; or destroyed: the subject
    was erased) the payload keeps its non-personal fields and the personal ones take their
    defaults; None when the v1 payload cannot stand without them (an order needs its buyer).
    """
    model = data_model_for(event.type, 1)
    if model is None:
        return None
    sealed = event.data.sealed
    data = event.data.model_dump(mode="json", exclude={"sealed"})
    if key is not None:
        try:
            raw = base64.urlsafe_b64decode(sealed.ct.encode())
            plain = AESGCM(key).decrypt(raw[:12], raw[12:], _aad(event.id, sealed.kid))
        except (InvalidTag, ValueError) as exc:
            raise SealError(f"event {event.id}: the sealed block does not open") from exc
        data.update(json.loads(plain))
    try:
        payload = model.model_validate(data)
    except ValidationError:
        return None
    envelope = _ENVELOPES.get(model)
    if envelope is None:
        envelope = _ENVELOPES.setdefault(model, CloudEvent[model])  # type: ignore[valid-type]
    attrs = event.model_dump(exclude={"data", "dataschema"})
    return envelope(**attrs, dataschema=f"urn:odr:schema:{event.type}:v1", data=payload)  # type: ignore[no-any-return]


_ENVELOPES: dict[type[BaseModel], Any] = {}


class Sealer:
    """Seals outgoing events with keys from the service's own store, in the caller's transaction."""

    def __init__(self, store: KeyStore, owner: str) -> None:
        self.store = store
        self.owner = owner

    def seal(
        self, session: Session, event: CloudEvent[Any], subject_id: str | None
    ) -> CloudEvent[Any]:
        return self.seal_many(session, [(event, subject_id)])[0]

    def seal_many(
        self, session: Session, pairs: Sequence[tuple[CloudEvent[Any], str | None]]
    ) -> list[CloudEvent[Any]]:
        """Seal each event under its subject's key (one key query for all).

        An event with no subject (None) is about nobody in particular and leaves as it is; an
        event that is already sealed too.
        """
        subjects = {s for e, s in pairs if s is not None and not is_sealed(e)}
        keys = self.store.active_keys(session, subjects) if subjects else {}
        out: list[CloudEvent[Any]] = []
        for event, subject_id in pairs:
            if subject_id is None or is_sealed(event):
                out.append(event)
            else:
                out.append(seal(event, keys[subject_id], self.owner))
        return out
