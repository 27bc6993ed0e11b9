"""outbox slots: each unsent row's relay slot, and an index of the unsent rows only

Rows waiting to be sent get the slot of their Kafka key; rows already sent are never read by a
relay again and keep 0. The index of every row's published_at gives way to a partial index of
the unsent rows, which serves the relay's poll and the backlog count and stays as small as the
backlog while published rows accumulate.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from odr_shared.outbox import outbox_slot

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTBOX = sa.table(
    "outbox_messages",
    sa.column("id", sa.BigInteger()),
    sa.column("key", sa.String()),
    sa.column("slot", sa.Integer()),
    sa.column("published_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column(
        "outbox_messages",
        sa.Column("slot", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    bind = op.get_bind()
    waiting = bind.execute(
        sa.select(_OUTBOX.c.id, _OUTBOX.c.key).where(_OUTBOX.c.published_at.is_(None))
    ).all()
    if waiting:
        bind.execute(
            _OUTBOX.update()
            .where(_OUTBOX.c.id == sa.bindparam("row_id"))
            .values(slot=sa.bindparam("row_slot")),
            [{"row_id": row.id, "row_slot": outbox_slot(row.key)} for row in waiting],
        )
    op.create_index(
        op.f("ix_outbox_messages_unsent"),
        "outbox_messages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.drop_index(op.f("ix_outbox_messages_published_at"), table_name="outbox_messages")


def downgrade() -> None:
    op.create_index(
        op.f("ix_outbox_messages_published_at"), "outbox_messages", ["published_at"], unique=False
    )
    op.drop_index(op.f("ix_outbox_messages_unsent"), table_name="outbox_messages")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("slot")
