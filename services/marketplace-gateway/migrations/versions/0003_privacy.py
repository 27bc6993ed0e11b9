"""personal data lifecycle: subject keys, and the data subject of each buyer's rows

`subject_keys` holds the wrapped data key of each data subject whose order events this gateway
seals (odr_shared.privacy). Inbound deliveries, order snapshots and outbound deliveries get the
buyer's subject id (a keyed hash of the canonical phone), so an erasure or an access export
finds a buyer's rows without decrypting every row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBJECT_TABLES = ("inbound_deliveries", "order_snapshots", "outbound_deliveries")


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("kid", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_subject_keys")),
    )
    with op.batch_alter_table("subject_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subject_keys_subject_id"), ["subject_id"], unique=False
        )
    for table in _SUBJECT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
            batch_op.create_index(
                batch_op.f(f"ix_{table}_subject_id"), ["subject_id"], unique=False
            )


def downgrade() -> None:
    for table in reversed(_SUBJECT_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_subject_id"))
            batch_op.drop_column("subject_id")
    with op.batch_alter_table("subject_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_keys_subject_id"))
    op.drop_table("subject_keys")
