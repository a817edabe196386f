"""The privacy mailbox: inbound mail (processed once, by UID and Message-ID), per-request reply addresses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_table(
        "inbound_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("uid_validity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id_hash", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("from_addr", sa.String(length=254), nullable=True),
        sa.Column("from_hash", sa.String(length=64), nullable=True),
        sa.Column("from_name", sa.String(length=200), nullable=True),
        sa.Column("subject", sa.String(length=254), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column("refused", sa.JSON(), nullable=True),
        sa.Column("html_only", sa.Boolean(), nullable=False),
        sa.Column("auto_submitted", sa.Boolean(), nullable=False),
        sa.Column("too_large", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("matched_by", sa.String(length=16), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("related_request_id", sa.Integer(), nullable=True),
        sa.Column("handled_by_id", sa.Integer(), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dismiss_reason", sa.String(length=32), nullable=True),
        sa.Column("minimised_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["handled_by_id"], ["staff_user.id"], name="fk_inbound_mail_handled_by_id_staff_user"
        ),
        sa.ForeignKeyConstraint(
            ["related_request_id"],
            ["dsr_request.id"],
            name="fk_inbound_mail_related_request_id_dsr_request",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_request.id"], name="fk_inbound_mail_request_id_dsr_request", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_mail"),
        sa.UniqueConstraint("mailbox", "uid_validity", "uid", name="uq_inbound_mail_mailbox_uid"),
        sa.UniqueConstraint("message_id_hash", name="uq_inbound_mail_message_id_hash"),
    )
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_mail_from_hash", ["from_hash"], unique=False)
        batch_op.create_index("ix_inbound_mail_request_id", ["request_id"], unique=False)
        batch_op.create_index("ix_inbound_mail_status_received", ["status", "received_at"], unique=False)
    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_token", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint("uq_dsr_request_reply_token", ["reply_token"])
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.String(length=254), nullable=True))


def downgrade_():
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.drop_column("reply_to")
    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.drop_constraint("uq_dsr_request_reply_token", type_="unique")
        batch_op.drop_column("reply_token")
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_mail_status_received")
        batch_op.drop_index("ix_inbound_mail_request_id")
        batch_op.drop_index("ix_inbound_mail_from_hash")
    op.drop_table("inbound_mail")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
