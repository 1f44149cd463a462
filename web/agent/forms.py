"""Agent forms. Choices are whitelists: anything else is a validation error, not a query."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    HiddenField,
    IntegerField,
    MultipleFileField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import HiddenInput, NumberInput

from ticketing.models import Priority, Status
from web.forms import options

STATUS_CHOICES = options((s.value, s.value.capitalize()) for s in Status)


class ComposerForm(FlaskForm):
    """Reply to the customer, or an internal note."""

    mode = SelectField(
        "Type", choices=options([("reply", "Reply"), ("note", "Internal note")]), default="reply"
    )
    body = TextAreaField(
        "Message",
        validators=[DataRequired("Write a message first."), Length(max=100_000)],
    )
    attachments = MultipleFileField("Attachments")
    status = SelectField(
        "Then set status",
        choices=options([("pending", "Pending"), ("open", "Open"), ("solved", "Solved")]),
        default="pending",
    )


class StatusForm(FlaskForm):
    status = SelectField("Status", choices=STATUS_CHOICES)


class AssignForm(FlaskForm):
    assignee = SelectField("Assignee", choices=[], validators=[Optional()])


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for one-button actions."""

    next = HiddenField()


# -- ticket actions (web/agent/actions.py) -------------------------------------------------

PRIORITY_CHOICES = options((p.value, p.value.capitalize()) for p in Priority)
# Ticket numbers and entry ids fit a 32-bit integer column on every database.
MAX_ID = 2**31 - 1


class PriorityForm(FlaskForm):
    priority = SelectField("Priority", choices=PRIORITY_CHOICES)


class TagsForm(FlaskForm):
    tags = StringField(
        "Tags", description="Separate tags with commas.", validators=[Length(max=1000)]
    )


class MergeForm(FlaskForm):
    into = IntegerField(
        "Merge into ticket number",
        validators=[InputRequired("Enter a ticket number."), NumberRange(1, MAX_ID)],
        widget=NumberInput(min=1),
    )


class NumberListField(Field):
    """Ticket numbers from repeated checkbox values (`numbers=1001&numbers=1002`).

    Anything but plain digits is a validation error, never passed on."""

    def _value(self) -> str:
        return ""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = []
        for value in valuelist:
            if not (value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID):
                self.data = []
                raise ValueError("Select tickets from the list.")
            self.data.append(int(value))


class BulkForm(FlaskForm):
    """Bulk assign/status on the inbox list; the action is checked against a whitelist by
    `ticketing.services.actions.parse_bulk_action`."""

    numbers = NumberListField("Tickets", default=list)
    action = StringField(
        "With selected tickets", validators=[DataRequired("Choose an action."), Length(max=40)]
    )
    next = HiddenField()


class ReplyGuardForm(FlaskForm):
    """Rides along in the composer (same prefix): what the agent had seen when they wrote.

    Its CSRF token is the composer's own."""

    class Meta:
        csrf = False

    seen_entry_id = IntegerField(
        widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)]
    )
    reviewed_entry_id = IntegerField(
        widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)]
    )
    send_anyway = BooleanField("Send anyway")


class SavedReplyPickForm(FlaskForm):
    """The composer's "Saved reply" picker: a GET that reloads the page with the text filled in."""

    class Meta:
        csrf = False

    saved_reply = SelectField("Saved reply", choices=[], validate_choice=False)
