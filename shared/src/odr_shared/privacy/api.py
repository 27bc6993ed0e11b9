"""The subject-key endpoint every service serves to the others (role `service` only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.auth import ServiceParty
from odr_shared.db import READ_ONLY
from odr_shared.privacy.keys import KeyStore, encode_key
from odr_shared.privacy.opening import MAX_KIDS_PER_REQUEST


class KeysRequest(BaseModel):
    kids: list[str] = Field(min_length=1, max_length=MAX_KIDS_PER_REQUEST)


class KeysResponse(BaseModel):
    keys: dict[str, str] = Field(
        description="kid -> base64url data key; a kid left out is destroyed or unknown"
    )


def subject_keys_router(store: KeyStore, session_factory: sessionmaker[Session]) -> APIRouter:
    router = APIRouter(tags=["internal"])

    @router.post("/internal/v1/subject-keys", response_model=KeysResponse)
    def subject_keys(body: KeysRequest, _caller: ServiceParty) -> KeysResponse:
        """The data keys of the named subjects' sealed events, for another platform service."""
        with session_factory() as session:
            session.connection(execution_options={READ_ONLY: True})
            held = store.keys_by_id(session, body.kids)
        return KeysResponse(keys={kid: encode_key(k.key) for kid, k in held.items()})

    return router
