"""Admin forms (CSRF-protected by Flask-WTF). Every message says what to do, in words.

The services check the rules that matter (unique names, safe IMAP settings); these forms
catch what a form can — a missing field, a port that is not a number — so the error sits next
to the field, and they never carry the IMAP password back into the page.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from ticketing.models import AgentRole, MailboxSecurity
from web.forms import options

ROLE_CHOICES = options(
    [(AgentRole.AGENT.value, "Agent"), (AgentRole.ADMIN.value, "Admin")],
)
SECURITY_CHOICES = options(
    [
        (MailboxSecurity.TLS.value, "TLS (IMAPS, usually port 993)"),
        (MailboxSecurity.STARTTLS.value, "STARTTLS (usually port 143)"),
        (MailboxSecurity.PLAIN.value, "None: only for a server on this machine"),
    ]
)
_EMAIL = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+$"


def _no_control_characters(_form: FlaskForm, field: Any) -> None:
    """Reject NUL and other control characters (PostgreSQL cannot even store NUL)."""
    if field.data and any((ord(c) < 32 and c not in "\t\r\n") or ord(c) == 127 for c in field.data):
        raise ValidationError("Remove the invisible control characters from this field.")


def _one_line(_form: FlaskForm, field: Any) -> None:
    if field.data and any(ord(c) < 32 or ord(c) == 127 for c in field.data):
        raise ValidationError("Use a single line without control characters.")


def _port(_form: FlaskForm, field: Any) -> None:
    # None means the value did not parse; PortField already said so.
    if field.data is not None and not 1 <= field.data <= 65535:
        raise ValidationError("Enter a port between 1 and 65535.")


class PortField(IntegerField):
    """An integer field whose parse error says what to type."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError("Enter the port as a number, such as 993.") from None


class InviteForm(FlaskForm):
    """Add an agent; they get a temporary password shown once."""

    name = StringField(
        "Name",
        validators=[DataRequired("Enter the agent's name."), Length(max=200), _one_line],
    )
    email = EmailField(
        "Email",
        validators=[
            DataRequired("Enter an email address like name@example.com."),
            Length(max=320, message="Use an email address of at most 320 characters."),
            Regexp(_EMAIL, message="Enter an email address like name@example.com."),
        ],
    )
    role = SelectField("Role", choices=ROLE_CHOICES, default=AgentRole.AGENT.value)


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class MailboxForm(FlaskForm):
    """`flask mailboxes add`, as a form."""

    name = StringField(
        "Name",
        description="A short handle, such as support (letters, digits, '.', '_', '-').",
        validators=[DataRequired("Enter a name for the mailbox, such as support."), _one_line],
    )
    address = EmailField(
        "Support address",
        description="The address customers write to.",
        validators=[
            DataRequired("Enter the support address, like support@example.com."),
            Length(max=320, message="Use an email address of at most 320 characters."),
            _one_line,
        ],
    )
    imap_host = StringField(
        "IMAP server",
        description="Host name or IP address, such as imap.example.com.",
        validators=[DataRequired("Enter the IMAP server's host name."), _one_line],
    )
    imap_port = PortField(
        "IMAP port",
        default=993,
        validators=[InputRequired("Enter the port as a number, such as 993."), _port],
    )
    security = SelectField(
        "Encryption", choices=SECURITY_CHOICES, default=MailboxSecurity.TLS.value
    )
    imap_user = StringField(
        "IMAP user name",
        description="Often the full email address.",
        validators=[DataRequired("Enter the IMAP user name."), Length(max=320), _one_line],
    )
    # PasswordField never renders its value back into the page (hide_value).
    imap_password = PasswordField(
        "IMAP password",
        description="Stored encrypted; never shown again.",
        validators=[DataRequired("Enter the IMAP password."), Length(max=1000)],
    )
    folder = StringField(
        "Folder",
        default="INBOX",
        validators=[DataRequired("Enter the folder to poll, such as INBOX."), _one_line],
    )
    move_to = StringField(
        "Move processed mail to (optional)",
        description="Leave empty to only mark processed mail as read.",
        validators=[Optional(), _one_line],
    )


class MailboxPasswordForm(FlaskForm):
    """`flask mailboxes set-password`, as a form."""

    imap_password = PasswordField(
        "New IMAP password",
        validators=[DataRequired("Enter the new IMAP password."), Length(max=1000)],
    )


class SavedReplyForm(FlaskForm):
    title = StringField(
        "Title",
        description="What agents pick from the list, such as “Refund on its way”.",
        validators=[
            DataRequired("Give the saved reply a title."),
            Length(max=200, message="Use a title of at most 200 characters."),
            _one_line,
        ],
    )
    body = TextAreaField(
        "Reply text",
        validators=[
            DataRequired("Write the reply text."),
            Length(max=100_000, message="Use at most 100,000 characters."),
            _no_control_characters,
        ],
    )
