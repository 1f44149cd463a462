"""Agent forms. Choices are whitelists: anything else is a validation error, not a query."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, MultipleFileField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ticketing.models import Status
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
