"""Intake forms. Every field has a length limit and every choice is checked against a fixed list.

Input is hostile: NUL bytes and other control characters are refused rather than stored, and the
correction pairs are only read (and validated) for correction requests, so an access request with
untouched correction rows is still valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    FieldList,
    Form,
    FormField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from app.sources import account

if TYPE_CHECKING:
    from werkzeug.datastructures import FileStorage

REQUEST_TYPES = [
    ("access", "Get a copy of my data (access)"),
    ("correction", "Correct my data (correction)"),
    ("deletion", "Delete my data and close my account (deletion)"),
    ("opt_out", "Opt out of analytics, and of any sale or sharing of my data (opt-out)"),
    ("restriction", "Limit how my data is used while something is checked (restriction)"),
    ("objection", "Object to how my data is used (objection)"),
]
REQUESTERS = [
    ("self", "Myself"),
    ("agent", "Someone who authorised me (I am their agent)"),
    ("guardian", "My child, or a child in my care (I am their parent or guardian)"),
]
JURISDICTIONS = [
    ("gdpr", "European Union, EEA or United Kingdom (GDPR)"),
    ("ccpa", "California, United States (CCPA)"),
    ("other", "Somewhere else"),
]
CORRECTABLE_FIELDS = list(account.CORRECTABLE_FIELDS.items())  # (field, label) choices
CORRECTION_ROWS = 3

# Control characters other than tab and newlines, lone surrogates, non-characters, and the
# bidirectional overrides and isolates that make text read differently from what it is.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069]")


def select_choices(pairs: Iterable[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def clean_text(form: Form, field: Field) -> None:
    if field.data and _BAD_CHARS.search(field.data):
        raise ValidationError("Remove the invisible control characters from this field.")


def single_line(form: Form, field: Field) -> None:
    if field.data and ("\n" in field.data or "\r" in field.data or "\t" in field.data):
        raise ValidationError("Use a single line.")


def check_email(value: str) -> str:
    """Syntax only (no DNS). Outside production the reserved ``.test`` domain is accepted for test rigs."""
    result = validate_email(
        value, check_deliverability=False, test_environment=current_app.config.get("APP_ENV") != "production"
    )
    return result.normalized.lower()


def strip_filter(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


class CorrectionEntry(Form):
    """One proposed change: which account field, and its new value."""

    field = SelectField(
        "Field to correct",
        choices=select_choices([("", "Choose a field"), *CORRECTABLE_FIELDS]),
        validate_choice=False,
        filters=[strip_filter],
    )
    value = StringField("Correct value", filters=[strip_filter])


class EmailChecked:
    """Forms with an ``email`` field: syntax checked and normalised by email-validator (no network)."""

    def validate_email(self, field: Field) -> None:
        if not field.data or len(field.data) > 254:
            return
        try:
            field.data = check_email(field.data)
        except EmailNotValidError as exc:
            raise ValidationError(f"Enter a valid email address: {exc}") from None


class IntakeForm(EmailChecked, FlaskForm):
    request_type = RadioField(
        "What would you like us to do?",
        choices=select_choices(REQUEST_TYPES),
        validators=[InputRequired(message="Choose the kind of request.")],
    )
    email = EmailField(
        "Email address",
        description="The address you use with ChatGPTTech. We send a confirmation link to it.",
        validators=[DataRequired(message="Enter your email address."), Length(max=254), clean_text],
        filters=[strip_filter],
    )
    full_name = StringField(
        "Full name",
        validators=[
            DataRequired(message="Enter your full name."),
            Length(max=200, message="Use at most 200 characters."),
            clean_text,
            single_line,
        ],
        filters=[strip_filter],
    )
    jurisdiction = SelectField(
        "Where do you live?",
        description="This decides which law applies and how long we have to answer.",
        choices=select_choices(JURISDICTIONS),
        validators=[InputRequired(message="Choose where you live.")],
    )
    details = TextAreaField(
        "Anything else we should know (optional)",
        description="For example, other email addresses or account IDs you used. At most 5,000 characters.",
        validators=[Length(max=5000, message="Use at most 5,000 characters."), clean_text],
        filters=[strip_filter],
    )
    correction = FieldList(FormField(CorrectionEntry), min_entries=CORRECTION_ROWS, max_entries=CORRECTION_ROWS)
    requester = RadioField("Who is this request for?", choices=select_choices(REQUESTERS), default="self")
    agent_name = StringField(
        "Your name, as the agent (or your organisation's)",
        validators=[Length(max=200, message="Use at most 200 characters."), clean_text, single_line],
        filters=[strip_filter],
    )
    agent_email = EmailField(
        "Your email address, as the agent",
        validators=[Length(max=254), clean_text],
        filters=[strip_filter],
    )
    permission = FileField("The signed permission from the person (PDF or image, at most 2 MB)")
    confirm_deletion = BooleanField(
        "I understand that deleting my data revokes my API keys and closes my account, and that billing "
        "records are kept for as long as the law requires."
    )

    def validate_requester(self, field: Field) -> None:
        if field.data not in dict(REQUESTERS):
            field.data = "self"

    def validate_agent_email(self, field: Field) -> None:
        if self.requester.data != "agent":
            return
        if not field.data:
            raise ValidationError("Give your own email address, so we can write to you as the agent.")
        try:
            field.data = check_email(field.data)
        except EmailNotValidError as exc:
            raise ValidationError(f"Enter a valid email address: {exc}") from None

    def validate_permission(self, field: Field) -> None:
        if self.requester.data == "agent" and not getattr(field.data, "filename", ""):
            raise ValidationError("Attach the person's signed permission for you to make this request.")

    def permission_file(self) -> tuple[str, str, bytes] | None:
        return _upload(self.permission.data)

    def validate_confirm_deletion(self, field: Field) -> None:
        if self.request_type.data == "deletion" and not field.data:
            raise ValidationError("Tick the box to confirm you understand what deletion means.")

    def validate_correction(self, field: FieldList) -> None:
        if self.request_type.data != "correction":
            return
        valid = dict(CORRECTABLE_FIELDS)
        found = 0
        for entry in field.entries:
            sub = entry.form
            name, value = sub.field.data or "", sub.value.data or ""
            if not name and not value:
                continue
            if name not in valid:
                sub.field.errors = [*sub.field.errors, "Choose name, email address or company."]
            if not value:
                sub.value.errors = [*sub.value.errors, "Enter the correct value."]
            elif len(value) > 254:
                sub.value.errors = [*sub.value.errors, "Use at most 254 characters."]
            elif _BAD_CHARS.search(value) or "\n" in value or "\r" in value:
                sub.value.errors = [*sub.value.errors, "Remove the control characters from this value."]
            elif name == "email":
                try:
                    check_email(value)
                except EmailNotValidError:
                    sub.value.errors = [*sub.value.errors, "Enter a valid email address."]
            if name in valid and value:
                found += 1
        if any(e.form.field.errors or e.form.value.errors for e in field.entries):
            raise ValidationError("Check the corrections below.")
        if not found:
            raise ValidationError("Tell us at least one field to correct and its correct value.")

    def corrections(self) -> list[tuple[str, str]]:
        """The (field, value) pairs filled in, for a valid correction request."""
        if self.request_type.data != "correction":
            return []
        return [
            (e.form.field.data, e.form.value.data)
            for e in self.correction.entries
            if e.form.field.data and e.form.value.data
        ]


class LookupForm(EmailChecked, FlaskForm):
    """``/requests/lookup``: every open request of the address gets its status link emailed again."""

    email = EmailField(
        "Email address",
        description="The address you made your requests with.",
        validators=[DataRequired(message="Enter your email address."), Length(max=254), clean_text],
        filters=[strip_filter],
    )


class ResendForm(EmailChecked, FlaskForm):
    email = EmailField(
        "Email address",
        validators=[DataRequired(message="Enter your email address."), Length(max=254), clean_text],
        filters=[strip_filter],
    )


class ReplyForm(FlaskForm):
    """The subject's answer on the status page (``action=reply``), with an optional file."""

    message = TextAreaField(
        "Your message",
        validators=[Length(max=10000, message="Use at most 10,000 characters."), clean_text],
        filters=[strip_filter],
    )
    attachment = FileField("Attach a file (optional: PDF, PNG, JPEG or text, at most 2 MB)")

    def validate_message(self, field: Field) -> None:
        if not (field.data or "").strip() and not self.attachment.data:
            raise ValidationError("Write your answer, or attach a file.")

    def attachment_data(self) -> tuple[str, str, bytes] | None:
        return _upload(self.attachment.data)


def _upload(upload: FileStorage | None) -> tuple[str, str, bytes] | None:
    """(file name, content type, bytes) of an uploaded file; ``app.dsr.attachments`` checks size and type."""
    from werkzeug.utils import secure_filename

    filename = getattr(upload, "filename", "")
    if not upload or not filename:
        return None
    data = upload.read()
    if not data:
        return None
    return secure_filename(filename) or "attachment", (upload.mimetype or "").lower(), data


class ConfirmForm(FlaskForm):
    """The verify page's button: an empty form that carries only the CSRF token."""


class CancelForm(FlaskForm):
    """The status page's cancel button (``action=cancel``)."""
