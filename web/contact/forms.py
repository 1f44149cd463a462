"""The contact form's fields and their checks, with errors in words next to each field.

Text is kept as typed (re-displayed escaped) except NUL, which no database stores; a field
with a control character in a one-line value, an address that cannot be mailed, or text over
its limit is an error the customer can fix without retyping anything.
"""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import HiddenField, MultipleFileField, StringField, TextAreaField
from wtforms.validators import ValidationError

MAX_NAME = 200
MAX_EMAIL = 254
MAX_SUBJECT = 250
MAX_BODY = 20_000

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,100}")


def _strip_nul(value: str | None) -> str:
    return (value or "").replace("\x00", "")


def _one_line(value: str | None) -> str:
    return " ".join(_strip_nul(value).split())


def is_valid_email(value: str) -> bool:
    """A plain mailable address: ASCII `local@domain.tld`, no display name, no spaces."""
    return len(value) <= MAX_EMAIL and bool(_EMAIL.fullmatch(value))


def is_valid_token(value: str | None) -> bool:
    return bool(value) and bool(_TOKEN.fullmatch(value or ""))


class ContactForm(FlaskForm):
    name = StringField("Your name", filters=[_one_line])
    email = StringField("Email address", filters=[_one_line])
    subject = StringField("Subject", filters=[_one_line])
    body = TextAreaField("How can we help?", filters=[_strip_nul])
    attachments = MultipleFileField("Attachments (optional)")
    # Honeypot: hidden from people by CSS and from assistive tech; bots fill it in.
    website = StringField("Leave this field empty")
    token = HiddenField()
    # "1" when the customer has seen suggestions (live, or on the second step without JS).
    confirmed = HiddenField()
    # Attachments already stored on the first step without JS, signed by us.
    stored = HiddenField()

    def validate_name(self, field: StringField) -> None:
        if not field.data:
            raise ValidationError("Enter your name.")
        if len(field.data) > MAX_NAME:
            raise ValidationError(f"Your name must be {MAX_NAME} characters or fewer.")

    def validate_email(self, field: StringField) -> None:
        if not field.data:
            raise ValidationError("Enter your email address.")
        if not is_valid_email(field.data):
            raise ValidationError("Enter an email address like name@example.com.")

    def validate_subject(self, field: StringField) -> None:
        if not field.data:
            raise ValidationError("Enter a subject: a few words about your question.")
        if len(field.data) > MAX_SUBJECT:
            raise ValidationError(f"The subject must be {MAX_SUBJECT} characters or fewer.")

    def validate_body(self, field: TextAreaField) -> None:
        if not field.data or not field.data.strip():
            raise ValidationError("Tell us how we can help.")
        if len(field.data) > MAX_BODY:
            raise ValidationError(
                f"Your message must be {MAX_BODY:,} characters or fewer "
                f"(it is {len(field.data):,}). Attach longer text as a file."
            )


class SolvedForm(FlaskForm):
    """The button on a "this solved it" page: CSRF only."""
