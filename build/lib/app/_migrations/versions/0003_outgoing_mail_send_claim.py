"""outgoing_mail: send claim (send_started_at) and interrupted_sends

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("interrupted_sends", sa.Integer(), server_default="0", nullable=False))


def downgrade_():
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.drop_column("interrupted_sends")
        batch_op.drop_column("send_started_at")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
