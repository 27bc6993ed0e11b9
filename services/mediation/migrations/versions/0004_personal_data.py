"""personal data: the subject keys mediation seals its events with, and each case's buyer

`subject_keys` holds each data subject's key, wrapped by the master key (odr_shared.privacy);
`mediation_cases.subject_id` names the buyer of a case as a data subject, so an erasure or an
access request finds their cases. Cases taken in before it keep NULL (only a masked phone is
stored, from which no subject can be computed): requests find them by their case ids.

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
    with op.batch_alter_table("mediation_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_mediation_cases_subject_id"), ["subject_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mediation_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mediation_cases_subject_id"))
        batch_op.drop_column("subject_id")
    op.drop_index("ix_subject_keys_subject_id", table_name="subject_keys")
    op.drop_table("subject_keys")
