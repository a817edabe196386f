"""Records an officer released from an access package's withheld data (GDPR Art. 15(4))

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 18:10:00

The ``awaiting_release`` request status (``ACCESS_REVIEW_BEFORE_RELEASE``) needs no schema change: a
status is a string column.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_table(
        "released_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_request.id"], name="fk_released_record_request_id_dsr_request", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"], ["staff_user.id"], name="fk_released_record_released_by_id_staff_user"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_released_record"),
        sa.UniqueConstraint("request_id", "category", "record_id", name="uq_released_record_request_id"),
    )
    op.create_index("ix_released_record_request_id", "released_record", ["request_id"], unique=False)


def downgrade_():
    op.drop_index("ix_released_record_request_id", table_name="released_record")
    op.drop_table("released_record")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
