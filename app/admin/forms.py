"""Forms of the staff dashboard (Flask-WTF: every one carries the CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp

from app.portal.forms import select_choices
from app.staff.models import Role

# Rendered as a <select> by the templates; validated against the roles here.
ROLE_CHOICES = [(r.value, r.value.capitalize()) for r in Role]
ROLE_VALUES = [r.value for r in Role]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class TotpForm(FlaskForm):
    totp = StringField(
        "Six-digit code from your authenticator app, or a recovery code",
        validators=[
            DataRequired(),
            Length(max=40),
            Regexp(r"^[\s0-9A-Za-z-]{6,40}$", message="Enter the six digits, or a recovery code."),
        ],
    )


class EnrolForm(TotpForm):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=1024)])


class RecoveryCodesForm(FlaskForm):
    """Only the CSRF token: a POST that replaces the recovery codes."""


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm_password = PasswordField("New password again", validators=[DataRequired(), Length(max=1024)])


class ReauthForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    totp = StringField("Six-digit code from your authenticator app", validators=[Optional(), Length(max=64)])


class TotpDisableForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])


class StaffCreateForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired(),
            Length(max=254),
            Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an email address."),
        ],
    )
    role = StringField("Role", default=Role.OFFICER.value, validators=[AnyOf(ROLE_VALUES, message="Choose a role.")])
    send_invite = BooleanField("Email them that their account exists", default=True)


class StaffRoleForm(FlaskForm):
    role = StringField("Role", validators=[AnyOf(ROLE_VALUES, message="Choose a role.")])


class SettingsForm(FlaskForm):
    require_totp = BooleanField("Require a second factor (TOTP) for every staff member")


class StaffIntakeForm(FlaskForm):
    """A request received by another channel, entered by staff (INTERFACE.md field names)."""

    request_type = SelectField(
        "Type",
        choices=select_choices(
            [
                ("access", "Access"),
                ("correction", "Correction"),
                ("deletion", "Deletion"),
                ("opt_out", "Opt-out"),
                ("restriction", "Restriction"),
                ("objection", "Objection"),
            ]
        ),
    )
    email = EmailField("Subject's email address", validators=[DataRequired(), Length(max=254)])
    full_name = StringField("Subject's name", validators=[DataRequired(), Length(max=200)])
    jurisdiction = SelectField("Law", choices=select_choices([("gdpr", "GDPR"), ("ccpa", "CCPA"), ("other", "Other")]))
    channel = SelectField(
        "How it reached us",
        choices=select_choices(
            [
                ("email", "Email"),
                ("letter", "Letter"),
                ("phone", "Phone"),
                ("web", "Web"),
                ("api", "API"),
                ("agent", "Authorised agent"),
            ]
        ),
    )
    received_at = StringField("Date received", validators=[DataRequired(), Length(max=40)])
    details = TextAreaField("What the subject asked (free text)", validators=[Optional(), Length(max=5000)])
    verification = RadioField(
        "Identity",
        choices=select_choices(
            [
                ("link", "Email the subject a link to confirm (recommended)"),
                ("verified", "Already verified another way"),
            ]
        ),
        default="link",
    )
    verification_method = StringField("How it was verified", validators=[Optional(), Length(max=200)])
    verification_evidence = TextAreaField("Evidence", validators=[Optional(), Length(max=2000)])
    # The privacy-mailbox intake item this request is made from (its text and files open the thread).
    inbound_mail_id = HiddenField(validators=[Optional(), Regexp(r"^\d{1,9}$")])

    def validate_email(self, field: Field) -> None:
        from email_validator import EmailNotValidError
        from wtforms.validators import ValidationError

        from app.portal.forms import check_email

        try:
            field.data = check_email(field.data or "")
        except EmailNotValidError as exc:
            raise ValidationError(f"Enter a valid email address: {exc}") from None
