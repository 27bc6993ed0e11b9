"""Alembic environment for the gateway database."""

from gateway.models import Base
from gateway.settings import get_settings
from odr_shared.migrate import run_env

run_env(Base.metadata, get_settings().database_url)
