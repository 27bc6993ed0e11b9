"""personal data: subject keys, each person's rows named by their data subject, bodies encrypted

- `subject_keys` (odr_shared.privacy): the data keys of what notifications would seal itself.
- `subject_id` (nullable, indexed) on deliveries, case contacts, preferences and opt-out links:
  an erasure or an access request finds a person's rows by it. Rows written before this
  revision keep None; the erasure also finds them by the lookup hashes of the person's addresses
  (notifications.privacy), so no data has to be decrypted here to fill it in.
- `deliveries.body` (the display copy of a message, in clear) becomes `body_enc`, encrypted with
  DATA_ENCRYPTION_KEY like `content_enc`; existing bodies are encrypted by this revision.
- `recipient_enc`, `content_enc` and `case_contacts.consumer_enc` may be None: erased, or past
  retention. `deliveries.erased_at` stamps an erasure; `unsubscribe_links.last_used_at` dates a
  link by the last message that carried it (retention counts from there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from odr_shared.crypto import DataCipher

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DELIVERIES = sa.table(
    "deliveries",
    sa.column("id", sa.Integer()),
    sa.column("body", sa.Text()),
    sa.column("body_enc", sa.Text()),
    sa.column("recipient_enc", sa.Text()),
    sa.column("content_enc", sa.Text()),
)
_CONTACTS = sa.table(
    "case_contacts", sa.column("case_id", sa.String()), sa.column("consumer_enc", sa.Text())
)
_LINKS = sa.table(
    "unsubscribe_links",
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("last_used_at", sa.DateTime(timezone=True)),
)
_BATCH = 500


def _cipher() -> DataCipher:
    # The service's own key (DATA_ENCRYPTION_KEY), as its API and worker read it.
    from notifications.settings import get_settings

    return DataCipher(get_settings().data_encryption_key)


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

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("body_enc", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("recipient_enc", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column("content_enc", existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f("ix_deliveries_subject_id"), ["subject_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_created_at"), ["created_at"], unique=False)

    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_DELIVERIES.c.id, _DELIVERIES.c.body).where(_DELIVERIES.c.body.is_not(None))
    ).all()
    if rows:
        cipher = _cipher()
        for i in range(0, len(rows), _BATCH):
            bind.execute(
                _DELIVERIES.update()
                .where(_DELIVERIES.c.id == sa.bindparam("row_id"))
                .values(body_enc=sa.bindparam("row_body")),
                [
                    {"row_id": r.id, "row_body": cipher.encrypt(r.body)}
                    for r in rows[i : i + _BATCH]
                ],
            )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("body")

    with op.batch_alter_table("case_contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.alter_column("consumer_enc", existing_type=sa.Text(), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_case_contacts_subject_id"), ["subject_id"], unique=False
        )

    with op.batch_alter_table("recipient_preferences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_recipient_preferences_subject_id"), ["subject_id"], unique=False
        )

    with op.batch_alter_table("unsubscribe_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    bind.execute(_LINKS.update().values(last_used_at=_LINKS.c.created_at))
    with op.batch_alter_table("unsubscribe_links", schema=None) as batch_op:
        batch_op.alter_column(
            "last_used_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            batch_op.f("ix_unsubscribe_links_subject_id"), ["subject_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_unsubscribe_links_last_used_at"), ["last_used_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("unsubscribe_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unsubscribe_links_last_used_at"))
        batch_op.drop_index(batch_op.f("ix_unsubscribe_links_subject_id"))
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("subject_id")

    with op.batch_alter_table("recipient_preferences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipient_preferences_subject_id"))
        batch_op.drop_column("subject_id")

    bind = op.get_bind()
    cipher = None
    erased_contacts = bind.execute(
        sa.select(_CONTACTS.c.case_id).where(_CONTACTS.c.consumer_enc.is_(None))
    ).all()
    if erased_contacts:
        cipher = _cipher()
        bind.execute(
            _CONTACTS.update()
            .where(_CONTACTS.c.consumer_enc.is_(None))
            .values(consumer_enc=cipher.encrypt("{}"))
        )
    with op.batch_alter_table("case_contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_contacts_subject_id"))
        batch_op.alter_column("consumer_enc", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("subject_id")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
    rows = bind.execute(sa.select(_DELIVERIES.c.id, _DELIVERIES.c.body_enc)).all()
    if rows:
        cipher = cipher or _cipher()
        for i in range(0, len(rows), _BATCH):
            bind.execute(
                _DELIVERIES.update()
                .where(_DELIVERIES.c.id == sa.bindparam("row_id"))
                .values(body=sa.bindparam("row_body")),
                [
                    {"row_id": r.id, "row_body": cipher.decrypt(r.body_enc) if r.body_enc else ""}
                    for r in rows[i : i + _BATCH]
                ],
            )
    # What was erased or purged stays gone: an empty value where the old schema needs one.
    bind.execute(
        _DELIVERIES.update().where(_DELIVERIES.c.recipient_enc.is_(None)).values(recipient_enc="")
    )
    bind.execute(
        _DELIVERIES.update().where(_DELIVERIES.c.content_enc.is_(None)).values(content_enc="")
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("content_enc", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("recipient_enc", existing_type=sa.Text(), nullable=False)
        batch_op.drop_index(batch_op.f("ix_deliveries_created_at"))
        batch_op.drop_index(batch_op.f("ix_deliveries_subject_id"))
        batch_op.drop_column("erased_at")
        batch_op.drop_column("body_enc")
        batch_op.drop_column("subject_id")

    op.drop_index("ix_subject_keys_subject_id", table_name="subject_keys")
    op.drop_table("subject_keys")
