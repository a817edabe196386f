"""The privacy mailbox: every message has its own row (copies are recorded as duplicates, a reused
Message-ID with other content is a new message), unreadable mail is kept for staff, and the server's copy
is known so that erasure reaches it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_mail_message_id_hash", type_="unique")
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("unreadable", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("on_server", sa.Boolean(), server_default="0", nullable=False))
        batch_op.create_index("ix_inbound_mail_message_id_hash", ["message_id_hash"], unique=False)
        batch_op.create_unique_constraint("uq_inbound_mail_dedupe_key", ["dedupe_key"])
        batch_op.create_foreign_key(
            "fk_inbound_mail_duplicate_of_id_inbound_mail",
            "inbound_mail",
            ["duplicate_of_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Rows read before: their Message-ID alone identified them (no content hash was kept), and only a
    # message too large to read stayed on the server.
    op.execute("UPDATE inbound_mail SET dedupe_key = message_id_hash")
    op.execute(sa.text("UPDATE inbound_mail SET on_server = too_large"))


def downgrade_():
    # One row a Message-ID again: the copies' rows, and a later mail that reused an earlier one's id, go.
    op.execute(
        "DELETE FROM inbound_mail WHERE id NOT IN (SELECT keep FROM (SELECT MIN(id) AS keep FROM inbound_mail "
        "GROUP BY message_id_hash) AS firsts)"
    )
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.drop_constraint("fk_inbound_mail_duplicate_of_id_inbound_mail", type_="foreignkey")
        batch_op.drop_constraint("uq_inbound_mail_dedupe_key", type_="unique")
        batch_op.drop_index("ix_inbound_mail_message_id_hash")
        batch_op.drop_column("on_server")
        batch_op.drop_column("unreadable")
        batch_op.drop_column("duplicate_of_id")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("content_hash")
        batch_op.create_unique_constraint("uq_inbound_mail_message_id_hash", ["message_id_hash"])


def upgrade_platform():
    pass


def downgrade_platform():
    pass
