"""Alembic environment for the complaints database."""

from complaints.models import Base
from complaints.settings import get_settings
from odr_shared.migrate import run_env

run_env(Base.metadata, get_settings().database_url)
