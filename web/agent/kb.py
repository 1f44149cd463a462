"""The agents' knowledge-base editor (`/agent/kb`): articles, preview, publishing, revisions,
categories. Thin routes: parse a form, load through one helper that 404s, call
`ticketing.services.kb`, commit, redirect. Every route needs a signed-in agent.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from ticketing.db import utcnow
from ticketing.errors import Invalid
from ticketing.kb_markdown import render
from ticketing.models import Agent, Article, ArticleStatus, Category
from ticketing.services import kb
from web.agent.forms import EmptyForm
from web.agent.kb_forms import ArticleForm, CategoryForm
from web.extensions import db
from web.forms import options

bp = Blueprint("kb", __name__, url_prefix="/agent/kb")

STATUS_FILTERS = {"all": None, "draft": ArticleStatus.DRAFT, "published": ArticleStatus.PUBLISHED}
ACTIONS = ("save", "publish", "preview")
LIST_LIMIT = 200


@bp.before_request
@login_required
def _require_agent() -> None:
    """Every route here is for signed-in agents."""


def _me() -> Agent:
    return current_user.agent  # type: ignore[no-any-return]


def _article(article_id: int) -> Article:
    return kb.get_article(db.session, article_id)


def _require_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


def _article_form(article: Article | None = None) -> ArticleForm:
    form = ArticleForm(obj=article) if article and request.method == "GET" else ArticleForm()
    form.category.choices = options(
        [("", "No category")] + [(str(c.id), c.name) for c in kb.list_categories(db.session)]
    )
    if article is not None and request.method == "GET":
        form.category.data = str(article.category_id or "")
    return form


def _chosen_category(form: ArticleForm) -> Category | None:
    value = form.category.data or ""
    return kb.get_category(db.session, int(value)) if value.isascii() and value.isdigit() else None


def _action() -> str:
    action = request.form.get("action", "save")
    return action if action in ACTIONS else "save"


@bp.get("")
def articles() -> str:
    status_key = request.args.get("status", "all")
    if status_key not in STATUS_FILTERS:
        status_key = "all"
    title = " ".join(request.args.get("q", "").replace("\x00", " ").split())[:200]
    status = STATUS_FILTERS[status_key]
    return render_template(
        "agent/kb_list.html",
        articles=kb.list_articles(db.session, status=status, title=title, limit=LIST_LIMIT),
        total=kb.count_articles(db.session, status=status),
        limit=LIST_LIMIT,
        q=title,
        status_key=status_key,
        section="articles",
    )


def _edit_page(form: ArticleForm, article: Article | None, *, preview: bool, status: int = 200):
    return render_template(
        "agent/kb_edit.html",
        form=form,
        article=article,
        preview=render(form.body.data or "") if preview else None,
        button=EmptyForm(formdata=None),
        section="articles",
    ), status


@bp.route("/new", methods=["GET", "POST"])
def new_article() -> Response | tuple[str, int]:
    form = _article_form()
    if request.method == "GET":
        return _edit_page(form, None, preview=False)
    action = _action()
    if not form.validate_on_submit():
        return _edit_page(form, None, preview=False, status=400)
    if action == "preview":
        return _edit_page(form, None, preview=True)
    try:
        article = kb.create_article(
            db.session,
            title=form.title.data,
            body=form.body.data or "",
            category=_chosen_category(form),
            actor=_me(),
            now=utcnow(),
            publish=action == "publish",
        )
    except Invalid as exc:
        db.session.rollback()
        form.title.errors = [*form.title.errors, str(exc)]
        return _edit_page(form, None, preview=False, status=400)
    db.session.commit()
    flash(f"“{article.title}” is published." if article.is_published else "Draft saved.", "info")
    return redirect(url_for("kb.edit_article", article_id=article.id))


@bp.post("/preview")
def preview() -> tuple[str, int]:
    """The live preview while typing (htmx, from the editor): the rendered body only."""
    form = _article_form()
    if not form.validate_on_submit() and form.body.errors:
        return render_template("agent/_kb_preview.html", form=form, preview=None), 400
    return render_template(
        "agent/_kb_preview.html", form=form, preview=render(form.body.data or "")
    ), 200


@bp.route("/<int:article_id>", methods=["GET", "POST"])
def edit_article(article_id: int) -> Response | tuple[str, int]:
    article = _article(article_id)
    form = _article_form(article)
    if request.method == "GET":
        return _edit_page(form, article, preview=True)
    action = _action()
    if not form.validate_on_submit():
        return _edit_page(form, article, preview=False, status=400)
    if action == "preview":
        return _edit_page(form, article, preview=True)
    now = utcnow()
    try:
        kb.update_article(
            db.session,
            article,
            title=form.title.data,
            body=form.body.data or "",
            category=_chosen_category(form),
            actor=_me(),
            now=now,
        )
        if action == "publish":
            kb.publish_article(db.session, article, now=now)
    except Invalid as exc:
        db.session.rollback()
        form.title.errors = [*form.title.errors, str(exc)]
        return _edit_page(form, article, preview=False, status=400)
    db.session.commit()
    flash(f"“{article.title}” is published." if action == "publish" else "Saved.", "info")
    return redirect(url_for("kb.edit_article", article_id=article.id))


@bp.post("/<int:article_id>/publish")
def publish(article_id: int) -> Response:
    article = _article(article_id)
    _require_button()
    kb.publish_article(db.session, article, now=utcnow())
    db.session.commit()
    flash(f"“{article.title}” is published.", "info")
    return redirect(url_for("kb.edit_article", article_id=article.id))


@bp.post("/<int:article_id>/unpublish")
def unpublish(article_id: int) -> Response:
    article = _article(article_id)
    _require_button()
    kb.unpublish_article(db.session, article, now=utcnow())
    db.session.commit()
    flash(f"“{article.title}” is a draft again: customers no longer see it.", "info")
    return redirect(url_for("kb.edit_article", article_id=article.id))


@bp.post("/<int:article_id>/delete")
def delete(article_id: int) -> Response:
    article = _article(article_id)
    _require_button()
    title = article.title
    kb.delete_article(db.session, article)
    db.session.commit()
    flash(f"“{title}” was deleted.", "info")
    return redirect(url_for("kb.articles"))


@bp.get("/<int:article_id>/revisions")
def revisions(article_id: int) -> str:
    article = _article(article_id)
    return render_template(
        "agent/kb_revisions.html",
        article=article,
        revisions=kb.revisions(db.session, article),
        section="articles",
    )


@bp.get("/<int:article_id>/revisions/<int:number>")
def revision(article_id: int, number: int) -> str:
    article = _article(article_id)
    found = kb.get_revision(db.session, article, number)
    return render_template(
        "agent/kb_revision.html",
        article=article,
        revision=found,
        body=render(found.body),
        section="articles",
    )


# -- categories -----------------------------------------------------------------------------------


def _categories_page(form: CategoryForm | None = None, status: int = 200) -> tuple[str, int]:
    categories = kb.list_categories(db.session)
    return render_template(
        "agent/kb_categories.html",
        categories=categories,
        edit_forms={
            c.id: CategoryForm(formdata=None, obj=c, prefix=f"c{c.id}") for c in categories
        },
        form=form or CategoryForm(formdata=None),
        button=EmptyForm(formdata=None),
        section="categories",
    ), status


@bp.get("/categories")
def categories() -> tuple[str, int]:
    return _categories_page()


@bp.post("/categories")
def create_category() -> Response | tuple[str, int]:
    form = CategoryForm()
    if form.validate_on_submit():
        try:
            category = kb.create_category(
                db.session,
                name=form.name.data,
                description=form.description.data or "",
                position=form.position.data,
            )
        except Invalid as exc:
            db.session.rollback()
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            db.session.commit()
            flash(f"Category “{category.name}” created.", "info")
            return redirect(url_for("kb.categories"))
    return _categories_page(form, status=400)


@bp.post("/categories/<int:category_id>")
def update_category(category_id: int) -> Response | tuple[str, int]:
    category = kb.get_category(db.session, category_id)
    form = CategoryForm(prefix=f"c{category.id}")
    if form.validate_on_submit():
        try:
            kb.update_category(
                db.session,
                category,
                name=form.name.data,
                description=form.description.data or "",
                position=form.position.data or 0,
            )
        except Invalid as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("kb.categories"))
        db.session.commit()
        flash(f"Category “{category.name}” saved.", "info")
        return redirect(url_for("kb.categories"))
    flash("Check the category's name and position.", "error")
    return redirect(url_for("kb.categories"))


@bp.post("/categories/<int:category_id>/delete")
def delete_category(category_id: int) -> Response:
    category = kb.get_category(db.session, category_id)
    _require_button()
    name = category.name
    kb.delete_category(db.session, category)
    db.session.commit()
    flash(f"Category “{name}” deleted; its articles have no category now.", "info")
    return redirect(url_for("kb.categories"))
