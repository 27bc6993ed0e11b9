"""privacy: subject keys, data subjects on orders and cases, privacy requests and exports

Adds the per-subject data keys (odr_shared.privacy), the buyer's subject id on orders and cases
(filled in here for the rows already stored: the keyed hash of each order's decrypted phone),
when a case closed on its evidence (retention counts from there), and the data-subject
requests with their encrypted exports.

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

_BATCH = 500


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
        batch_op.create_index(batch_op.f("ix_subject_keys_subject_id"), ["subject_id"])
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_subject_id"), ["subject_id"], unique=False)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_subject_id"), ["subject_id"], unique=False)
    with op.batch_alter_table("case_evidence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_case_evidence_case_closed_at"), ["case_closed_at"], unique=False
        )
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("platform_id", sa.String(length=40), nullable=True),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("order_ids", sa.JSON(), nullable=False),
        sa.Column("case_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("export_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reports", sa.JSON(), nullable=False),
        sa.Column("needs_work", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_requests")),
    )
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_privacy_requests_subject_id"), ["subject_id"])
        batch_op.create_index(batch_op.f("ix_privacy_requests_status"), ["status"])
        batch_op.create_index(batch_op.f("ix_privacy_requests_due_at"), ["due_at"])
        batch_op.create_index(batch_op.f("ix_privacy_requests_needs_work"), ["needs_work"])
    op.create_table(
        "privacy_exports",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("export_enc", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["privacy_requests.id"],
            name=op.f("fk_privacy_exports_request_id_privacy_requests"),
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_privacy_exports")),
    )
    with op.batch_alter_table("privacy_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_privacy_exports_expires_at"), ["expires_at"])
    _backfill()


def _backfill() -> None:
    """Subject ids of the orders and cases already stored (the keys are those of the settings)."""
    from complaints.deps import subject_function
    from complaints.settings import get_settings
    from odr_shared.crypto import DataCipher

    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("id", sa.String()),
        sa.column("buyer_phone_enc", sa.Text()),
        sa.column("subject_id", sa.String()),
    )
    cases = sa.table(
        "cases",
        sa.column("id", sa.String()),
        sa.column("order_id", sa.String()),
        sa.column("subject_id", sa.String()),
        sa.column("closed_at", sa.DateTime(timezone=True)),
    )
    evidence = sa.table(
        "case_evidence",
        sa.column("case_id", sa.String()),
        sa.column("case_closed_at", sa.DateTime(timezone=True)),
    )
    settings = get_settings()
    subject_of = subject_function(settings)
    cipher = DataCipher(settings.data_encryption_key)
    last = ""
    while True:
        rows = bind.execute(
            sa.select(orders.c.id, orders.c.buyer_phone_enc)
            .where(orders.c.id > last)
            .order_by(orders.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        params = []
        for row in rows:
            try:
                phone = cipher.decrypt(row.buyer_phone_enc)
            except ValueError:
                continue  # another key's ciphertext: filled in by the next event of the order
            # As the service names buyers: a phone that is no phone number (a marketplace's
            # masked one) still names its buyer, by the keyed hash of what was given.
            params.append({"row_id": row.id, "row_subject": subject_of(phone)})
        if params:
            bind.execute(
                orders.update()
                .where(orders.c.id == sa.bindparam("row_id"))
                .values(subject_id=sa.bindparam("row_subject")),
                params,
            )
    bind.execute(
        cases.update().values(
            subject_id=sa.select(orders.c.subject_id)
            .where(orders.c.id == cases.c.order_id)
            .scalar_subquery()
        )
    )
    bind.execute(
        evidence.update().values(
            case_closed_at=sa.select(cases.c.closed_at)
            .where(cases.c.id == evidence.c.case_id)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("privacy_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_exports_expires_at"))
    op.drop_table("privacy_exports")
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_requests_needs_work"))
        batch_op.drop_index(batch_op.f("ix_privacy_requests_due_at"))
        batch_op.drop_index(batch_op.f("ix_privacy_requests_status"))
        batch_op.drop_index(batch_op.f("ix_privacy_requests_subject_id"))
    op.drop_table("privacy_requests")
    with op.batch_alter_table("case_evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_evidence_case_closed_at"))
        batch_op.drop_column("case_closed_at")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_subject_id"))
        batch_op.drop_column("subject_id")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_subject_id"))
        batch_op.drop_column("subject_id")
    with op.batch_alter_table("subject_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_keys_subject_id"))
    op.drop_table("subject_keys")
