"""Alembic environment for the mediation database."""

from mediation.models import Base
from mediation.settings import get_settings
from odr_shared.migrate import run_env

run_env(Base.metadata, get_settings().database_url)
