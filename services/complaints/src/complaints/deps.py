"""Builds the use cases' dependencies from settings: the one place they are wired."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.engine import Engine

from complaints.domain import HolidayCalendar
from complaints.orders import SubjectOf
from complaints.service import Deps
from complaints.settings import ComplaintsSettings
from complaints.storage import LocalDiskStorage
from odr_shared.auth import TokenService
from odr_shared.crypto import DataCipher
from odr_shared.db import make_session_factory
from odr_shared.phone import InvalidPhone
from odr_shared.privacy import KeyStore, Sealer, subject_for_phone
from odr_shared.privacy.keys import subject_key_material


def subject_function(settings: ComplaintsSettings) -> SubjectOf:
    """A phone's data subject id; a marketplace's phone that is no phone number still names one
    buyer (the keyed hash of what was given), so that buyer can still be erased."""
    key = subject_key_material(settings)

    def subject_of(phone: str) -> str:
        try:
            return subject_for_phone(phone, key)
        except InvalidPhone:
            digest = hmac.new(key, phone.strip().encode(), hashlib.sha256).hexdigest()
            return "sp_" + digest[:32]

    return subject_of


def build_deps(settings: ComplaintsSettings, engine: Engine) -> Deps:
    keys = KeyStore.from_settings(settings)
    return Deps(
        settings=settings,
        sessions=make_session_factory(engine),
        cipher=DataCipher(settings.data_encryption_key),
        calendar=HolidayCalendar.vietnam(settings.holidays_file),
        storage=LocalDiskStorage(settings.storage_dir),
        tokens=TokenService(settings),
        keys=keys,
        sealer=Sealer(keys, owner="complaints"),
        subject_of=subject_function(settings),
    )
