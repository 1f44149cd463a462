"""Portal forms (CSRF-protected by Flask-WTF). Only the fields shown are read: nothing a
request adds (a customer id, a status) is ever bound to a model (security.md case 30)."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from ticketing.services.portal import MAX_REPLY


class LinkRequestForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired("Enter your email address."),
            Length(max=320, message="That email address is too long."),
            Regexp(r"^[^@\s]+@[^@\s]+$", message="Enter an email address like ann@example.com."),
        ],
    )


class ContinueForm(FlaskForm):
    """The button behind a magic link: the token travels in the POST body, not a URL."""

    token = HiddenField(validators=[DataRequired(), Length(max=200)])


class ReplyForm(FlaskForm):
    body = TextAreaField(
        "Your reply",
        validators=[
            DataRequired("Write a message first."),
            Length(max=MAX_REPLY, message="That message is too long."),
        ],
    )


class EmptyForm(FlaskForm):
    """A form with nothing but its CSRF token (log out)."""
