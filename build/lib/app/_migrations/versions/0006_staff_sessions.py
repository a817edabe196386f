"""Server-side staff sessions, recovery codes and enrolment links; failed sign-ins counted, no hard lock

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00

Every signed-in cookie from before this revision names a session version that no longer exists, so
staff sign in again once after the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def _staff_fk(table: str):
    return sa.ForeignKeyConstraint(
        ["staff_id"], ["staff_user.id"], name=f"fk_{table}_staff_id_staff_user", ondelete="CASCADE"
    )


def upgrade_():
    op.create_table(
        "staff_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reauth_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=24), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        _staff_fk("staff_session"),
        sa.PrimaryKeyConstraint("id", name="pk_staff_session"),
        sa.UniqueConstraint("token_hash", name="uq_staff_session_token_hash"),
    )
    op.create_index("ix_staff_session_staff_id", "staff_session", ["staff_id"], unique=False)
    op.create_table(
        "staff_recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _staff_fk("staff_recovery_code"),
        sa.PrimaryKeyConstraint("id", name="pk_staff_recovery_code"),
        sa.UniqueConstraint("code_hash", name="uq_staff_recovery_code_code_hash"),
    )
    op.create_index("ix_staff_recovery_code_staff_id", "staff_recovery_code", ["staff_id"], unique=False)
    op.create_table(
        "staff_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _staff_fk("staff_token"),
        sa.PrimaryKeyConstraint("id", name="pk_staff_token"),
        sa.UniqueConstraint("token_hash", name="uq_staff_token_token_hash"),
    )
    op.create_index("ix_staff_token_staff_id", "staff_token", ["staff_id"], unique=False)
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_failed_login_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("totp_pending_secret", sa.String(length=64), nullable=True))
        batch_op.drop_column("locked_until")
        batch_op.drop_column("session_version")


def downgrade_():
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column("totp_pending_secret")
        batch_op.drop_column("last_failed_login_at")
    op.drop_index("ix_staff_token_staff_id", table_name="staff_token")
    op.drop_table("staff_token")
    op.drop_index("ix_staff_recovery_code_staff_id", table_name="staff_recovery_code")
    op.drop_table("staff_recovery_code")
    op.drop_index("ix_staff_session_staff_id", table_name="staff_session")
    op.drop_table("staff_session")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
