"""Alembic environment for the notifications database."""

from notifications.models import Base
from notifications.settings import get_settings
from odr_shared.migrate import run_env

run_env(Base.metadata, get_settings().database_url)
