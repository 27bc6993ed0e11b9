"""neutrals: no index on the load counters, and room on each page for their updates

Routing reads candidates from the skills' indexes and takes capacity by primary key, so the
index on (on_leave, active_cases, last_assigned_at) no longer serves it. It made every
assignment and release write index entries for the neutral's row; without it (and with free
space on each page, PostgreSQL's fillfactor) a counter update stays a heap-only update.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_neutrals_routing", table_name="neutrals")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE neutrals SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE neutrals RESET (fillfactor)")
    op.create_index(
        "ix_neutrals_routing",
        "neutrals",
        ["on_leave", "active_cases", "last_assigned_at"],
        unique=False,
    )
