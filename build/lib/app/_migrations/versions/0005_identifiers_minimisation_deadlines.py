"""Request identifiers, notes and messages; minimisation columns; channel, outcome, second approval

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 11:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_table(
        "request_identifier",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("value", sa.String(length=254), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("added_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_request.id"], name="fk_request_identifier_request_id_dsr_request", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["added_by_id"], ["staff_user.id"], name="fk_request_identifier_added_by_id_staff_user"),
        sa.PrimaryKeyConstraint("id", name="pk_request_identifier"),
    )
    op.create_index("ix_request_identifier_request_id", "request_identifier", ["request_id"], unique=False)
    op.create_table(
        "request_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_request.id"], name="fk_request_note_request_id_dsr_request", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["author_id"], ["staff_user.id"], name="fk_request_note_author_id_staff_user"),
        sa.PrimaryKeyConstraint("id", name="pk_request_note"),
    )
    op.create_index("ix_request_note_request_id", "request_note", ["request_id"], unique=False)
    op.create_table(
        "request_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attachment_name", sa.String(length=200), nullable=True),
        sa.Column("attachment_type", sa.String(length=100), nullable=True),
        sa.Column("attachment_size", sa.Integer(), nullable=True),
        sa.Column("attachment_key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_request.id"], name="fk_request_message_request_id_dsr_request", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["author_id"], ["staff_user.id"], name="fk_request_message_author_id_staff_user"),
        sa.PrimaryKeyConstraint("id", name="pk_request_message"),
    )
    op.create_index("ix_request_message_request_id", "request_message", ["request_id"], unique=False)

    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.alter_column("email", existing_type=sa.String(length=254), nullable=True)
        batch_op.alter_column("full_name", existing_type=sa.String(length=200), nullable=True)
        batch_op.alter_column("details", existing_type=sa.Text(), nullable=True)
        batch_op.add_column(sa.Column("email_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("channel", sa.String(length=16), server_default="web", nullable=False))
        batch_op.add_column(sa.Column("verification_method", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("verification_evidence", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("demo", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("minimised_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("subject_reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("first_approved_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("first_approved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_dsr_request_email_hash", ["email_hash"], unique=False)
        batch_op.create_foreign_key(
            "fk_dsr_request_first_approved_by_id_staff_user", "staff_user", ["first_approved_by_id"], ["id"]
        )

    with op.batch_alter_table("correction_item", schema=None) as batch_op:
        batch_op.alter_column("proposed_value", existing_type=sa.String(length=254), nullable=True)
        batch_op.add_column(sa.Column("reject_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identifier_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("correction_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_token_identifier_id_request_identifier",
            "request_identifier",
            ["identifier_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_token_correction_id_correction_item", "correction_item", ["correction_id"], ["id"], ondelete="CASCADE"
        )

    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.alter_column("to_addr", existing_type=sa.String(length=254), nullable=True)
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=True)
        batch_op.add_column(sa.Column("to_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("minimised_at", sa.DateTime(timezone=True), nullable=True))


def downgrade_():
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.drop_column("minimised_at")
        batch_op.drop_column("redacted_at")
        batch_op.drop_column("to_hash")
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("to_addr", existing_type=sa.String(length=254), nullable=False)

    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_constraint("fk_token_correction_id_correction_item", type_="foreignkey")
        batch_op.drop_constraint("fk_token_identifier_id_request_identifier", type_="foreignkey")
        batch_op.drop_column("correction_id")
        batch_op.drop_column("identifier_id")

    with op.batch_alter_table("correction_item", schema=None) as batch_op:
        batch_op.drop_column("confirmed_at")
        batch_op.drop_column("reject_reason")
        batch_op.alter_column("proposed_value", existing_type=sa.String(length=254), nullable=False)

    with op.batch_alter_table("dsr_request", schema=None) as batch_op:
        batch_op.drop_constraint("fk_dsr_request_first_approved_by_id_staff_user", type_="foreignkey")
        batch_op.drop_index("ix_dsr_request_email_hash")
        for name in (
            "first_approved_at",
            "first_approved_by_id",
            "outcome",
            "subject_reminded_at",
            "waiting_since",
            "cancel_reason",
            "minimised_at",
            "demo",
            "verification_evidence",
            "verification_method",
            "channel",
            "email_hash",
        ):
            batch_op.drop_column(name)
        batch_op.alter_column("details", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("full_name", existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column("email", existing_type=sa.String(length=254), nullable=False)

    op.drop_index("ix_request_message_request_id", table_name="request_message")
    op.drop_table("request_message")
    op.drop_index("ix_request_note_request_id", table_name="request_note")
    op.drop_table("request_note")
    op.drop_index("ix_request_identifier_request_id", table_name="request_identifier")
    op.drop_table("request_identifier")


def upgrade_platform():
    pass


def downgrade_platform():
    pass
