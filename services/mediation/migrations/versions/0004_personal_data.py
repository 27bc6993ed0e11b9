"""personal data: the subject keys mediation seals its events with, and each case's buyer

`subject_keys` holds each data subject's key, wrapped by the master key (odr_shared.privacy);
`mediation_cases.subject_id` names the buyer of a case as a data subject, so an erasure or an
access request finds their cases; `pending_erasures` remembers a request deferred while one of
the subject's cases was open, applied again when it closes. Cases taken in before keep a NULL
subject (only a masked phone is stored, from which none can be computed): requests find them by
their case ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("kid", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_subject_keys")),
    )
    op.create_index("ix_subject_keys_subject_id", "subject_keys", ["subject_id"], unique=False)
    op.create_table(
        "pending_erasures",
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("platform_id", sa.String(length=40), nullable=True),
        sa.Column("case_ids", sa.Text(), nullable=False),
        sa.Column("order_ids", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deferred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_pending_erasures")),
    )
    op.create_index(
        op.f("ix_pending_erasures_subject_id"), "pending_erasures", ["subject_id"], unique=False
    )
    with op.batch_alter_table("mediation_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_mediation_cases_subject_id"), ["subject_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mediation_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mediation_cases_subject_id"))
        batch_op.drop_column("subject_id")
    op.drop_index(op.f("ix_pending_erasures_subject_id"), table_name="pending_erasures")
    op.drop_table("pending_erasures")
    op.drop_index("ix_subject_keys_subject_id", table_name="subject_keys")
    op.drop_table("subject_keys")
