"""Shared-library tests; helpers beside them (consumer_proc) import as top-level modules."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odr_shared.testing import (
    postgres_available,
    postgres_required,
    temporary_postgres_database,
)

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, for what only PostgreSQL does (advisory locks)."""
    if not postgres_available():
        if postgres_required():
            pytest.fail("PostgreSQL is required in CI but not reachable")
        pytest.skip("PostgreSQL not reachable")
    with temporary_postgres_database() as url:
        yield url
