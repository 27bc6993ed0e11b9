"""Personal data: subject keys, sealed events, crypto-shredding (docs/privacy.md)."""

from odr_shared.events import PRIVACY_TOPIC
from odr_shared.privacy.api import subject_keys_router
from odr_shared.privacy.keys import (
    SUBJECT_KEYS_TABLE,
    KeyStore,
    MasterKey,
    SubjectKey,
    subject_for_phone,
    subject_keys_table,
)
from odr_shared.privacy.opening import KeyClient, KeyUnavailable, Opener, redacted
from odr_shared.privacy.sealing import PERSONAL_FIELDS, Sealer, SealError, is_sealed, seal, unsealed

__all__ = [
    "PERSONAL_FIELDS",
    "PRIVACY_TOPIC",
    "SUBJECT_KEYS_TABLE",
    "KeyClient",
    "KeyStore",
    "KeyUnavailable",
    "MasterKey",
    "Opener",
    "SealError",
    "Sealer",
    "SubjectKey",
    "is_sealed",
    "redacted",
    "seal",
    "subject_for_phone",
    "subject_keys_router",
    "subject_keys_table",
    "unsealed",
]
