"""platform_usage: index (account_id, id) for streamed exports and batched deletions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 11:10:00

"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    pass


def downgrade_():
    pass


def upgrade_platform():
    with op.batch_alter_table("platform_usage", schema=None) as batch_op:
        batch_op.create_index("ix_platform_usage_account_id_id", ["account_id", "id"], unique=False)


def downgrade_platform():
    with op.batch_alter_table("platform_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_usage_account_id_id")
