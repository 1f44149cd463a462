"""KB editor forms (CSRF-protected by Flask-WTF); the service checks the rules that matter."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ticketing.services.kb import MAX_BODY, MAX_CATEGORY_NAME, MAX_TITLE


class ArticleForm(FlaskForm):
    """Title, category and Markdown body; the button pressed says what to do (`action`)."""

    title = StringField(
        "Title",
        validators=[DataRequired("Give the article a title."), Length(max=MAX_TITLE)],
    )
    category = SelectField("Category", choices=[], validators=[Optional()])
    body = TextAreaField(
        "Article (Markdown)",
        description="Markdown: **bold**, *italic*, # headings, - lists, [links](https://…). "
        "HTML is shown as text; only http(s) and mailto links work.",
        validators=[Length(max=MAX_BODY, message="The article is too long.")],
    )


class CategoryForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired("Give the category a name."), Length(max=MAX_CATEGORY_NAME)],
    )
    description = StringField("Description", validators=[Optional(), Length(max=1000)])
    position = IntegerField(
        "Position", validators=[Optional(), NumberRange(min=0, max=10_000)], default=0
    )
