"""Builds the use cases' dependencies from settings: the one place they are wired."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from complaints.domain import HolidayCalendar
from complaints.service import Deps
from complaints.settings import ComplaintsSettings
from complaints.storage import LocalDiskStorage
from odr_shared.auth import TokenService
from odr_shared.crypto import DataCipher
from odr_shared.db import make_session_factory


def build_deps(settings: ComplaintsSettings, engine: Engine) -> Deps:
    return Deps(
        settings=settings,
        sessions=make_session_factory(engine),
        cipher=DataCipher(settings.data_encryption_key),
        calendar=HolidayCalendar.vietnam(settings.holidays_file),
        storage=LocalDiskStorage(settings.storage_dir),
        tokens=TokenService(settings),
    )
