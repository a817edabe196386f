"""dsr_request: index (status, closed_at, due_at) for the dashboard's on-time chart

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:50:00

"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.create_index("ix_dsr_request_status_closed", ["status", "closed_at", "due_at"], unique=False)


def downgrade_():
    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.drop_index("ix_dsr_request_status_closed")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
