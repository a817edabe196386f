"""The privacy mailbox: a keyed hash of the sender's mailbox however it is spelled (``+tag``, Gmail's
dots, ``googlemail.com``), so erasure reaches mail sent under another spelling of the subject's address

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailbox_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_inbound_mail_mailbox_hash", ["mailbox_hash"], unique=False)


def downgrade_():
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_mail_mailbox_hash")
        batch_op.drop_column("mailbox_hash")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
