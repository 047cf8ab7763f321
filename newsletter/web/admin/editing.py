"""Editing a draft on the desk: the page's one form (every edited field in one revision,
then the pressed button's move, drop or add; JSON for the page's autosave), the single-field
routes scripts and older pages post to, and "compose again"; thin over `newsletter.desk`."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from newsletter.db import session_scope
from newsletter.desk import document, drafts, editing, ordering
from newsletter.desk import papers as desk_papers
from newsletter.desk.document import DocumentEdit
from newsletter.errors import NewsletterError
from newsletter.web.admin.guard import Posted, back_to, posted
from newsletter.web.admin.issues import (
    desk_action,
    issue_or_404,
    issue_page_response,
    month_or_404,
)

router = APIRouter()


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NewsletterError(f"{what} must be a number") from None


def _document_edit(post: Posted) -> tuple[DocumentEdit, int | None]:
    """The draft page's fields as submitted (autosave posts only the edited ones)."""
    form = post.form
    edit = DocumentEdit(
        subject=post.get("subject") if "subject" in form else None,
        note=post.get("note") if "note" in form else None,
        lead=post.get("lead") if "lead" in form else None,
    )
    for raw in form.getlist("paper"):
        if not str(raw).isdigit():
            continue
        paper_id = int(str(raw))
        if f"summary-{paper_id}" in form:
            edit.summaries[paper_id] = post.get(f"summary-{paper_id}")
        if f"topics-{paper_id}" in form:
            edit.topics[paper_id] = [str(t) for t in form.getlist(f"topics-{paper_id}") if t]
        if f"in_email-{paper_id}" in form:
            edit.in_email[paper_id] = post.get(f"in_email-{paper_id}") != "no"
    base = post.get("base_revision")
    return edit, int(base) if base.isdigit() else None


@router.post("/admin/issues/{month}/save", response_class=HTMLResponse)
def save(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    """The draft page's one form: every edited field in one revision, then the button's
    operation (move, drop, add), so no button ever throws another field's edit away. With
    `Accept: application/json` (the page's autosave) it answers the new revision."""
    month = month_or_404(month)
    wants_json = "application/json" in request.headers.get("accept", "")
    op, _, target = post.get("op", "save").partition(":")
    edit, base = _document_edit(post)
    try:
        with session_scope(request.app.state.engine) as session:
            before = issue_or_404(session, month).revision
            issue, changed = document.save_document(session, month, edit, base, post.editor.email)
            paper_id = int(target) if target.isdigit() else None
            if op in ("section-up", "section-down") and target:
                ordering.move_section(
                    session, month, target, -1 if op == "section-up" else 1, post.editor.email
                )
            elif op in ("up", "down") and paper_id is not None:
                ordering.move_paper(
                    session, month, paper_id, -1 if op == "up" else 1, post.editor.email
                )
            elif op == "drop" and paper_id is not None:
                before = issue.revision
                editing.drop_paper(session, month, paper_id, post.editor.email)
            elif op in ("accept", "accept-edited") and paper_id is not None:
                edited = post.get(f"draft_summary-{paper_id}") if op == "accept-edited" else None
                drafts.accept_draft(session, month, paper_id, post.editor.email, edited)
            elif op == "keep" and paper_id is not None:
                editing.keep_topics(session, month, paper_id, post.editor.email)
            elif op == "add":
                editing.add_paper(
                    session, month, _int(post.get("add_paper"), "paper"), post.editor.email
                )
            revision = issue.revision
        if op == "redraft" and paper_id is not None:  # a network call: outside the save
            drafts.redraft(
                request.app.state.engine,
                request.app.state.settings,
                month,
                paper_id,
                post.editor.email,
            )
        if op == "arxiv":  # after the fields' save, outside its transaction: a network call
            desk_papers.add_by_arxiv(
                request.app.state.engine,
                request.app.state.settings,
                month,
                post.get("arxiv"),
                post.editor.email,
            )
            with Session(request.app.state.engine) as session:
                revision = issue_or_404(session, month).revision
    except NewsletterError as exc:
        if wants_json:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    if wants_json:
        return JSONResponse({"ok": True, "revision": revision, "changed": changed})
    done = {
        "up": "move",
        "down": "move",
        "drop": "drop",
        "add": "add",
        "arxiv": "add",
        "section-up": "move",
        "section-down": "move",
        "keep": "paper",
        "accept": "accept",
        "accept-edited": "accept",
        "redraft": "redraft",
    }.get(op, "saved")
    anchor = {"drop": "papers-h", "add": "papers-h", "arxiv": "papers-h"}.get(
        op,
        (f"section-{target}" if op.startswith("section") else f"paper-{target}") if target else "",
    )
    fragment = f"#{anchor}" if anchor else ""
    return back_to(f"/admin/issues/{month}?done={done}&before={before}{fragment}")


@router.post("/admin/issues/{month}/subject", response_class=HTMLResponse)
def edit_subject(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "subject",
        lambda s: editing.set_subject(s, month, post.get("subject"), post.editor.email),
        anchor="words-h",
    )


@router.post("/admin/issues/{month}/note", response_class=HTMLResponse)
def edit_note(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "note",
        lambda s: editing.set_note(s, month, post.get("note"), post.editor.email),
        anchor="note",
    )


@router.post("/admin/issues/{month}/lead", response_class=HTMLResponse)
def edit_lead(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    def act(session: Session) -> None:
        raw = post.get("paper_id")
        editing.set_lead(session, month, _int(raw, "paper") if raw else None, post.editor.email)

    return desk_action(request, post, month, "lead", act, anchor="lead")


@router.post("/admin/issues/{month}/papers/add", response_class=HTMLResponse)
def add_paper(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "add",
        lambda s: editing.add_paper(
            s, month, _int(post.get("paper_id"), "paper"), post.editor.email
        ),
    )


@router.post("/admin/issues/{month}/papers/{paper_id}", response_class=HTMLResponse)
def edit_paper(
    request: Request, month: str, paper_id: int, post: Posted = Depends(posted)
) -> Response:
    topics = [str(t) for t in post.form.getlist("topics")]
    return desk_action(
        request,
        post,
        month,
        "paper",
        lambda s: editing.edit_paper(
            s, month, paper_id, post.get("summary"), topics, post.editor.email
        ),
        anchor=f"paper-{paper_id}",
    )


@router.post("/admin/issues/{month}/papers/{paper_id}/drop", response_class=HTMLResponse)
def drop_paper(
    request: Request, month: str, paper_id: int, post: Posted = Depends(posted)
) -> Response:
    return desk_action(
        request,
        post,
        month,
        "drop",
        lambda s: editing.drop_paper(s, month, paper_id, post.editor.email),
        anchor="papers-h",
    )


@router.post("/admin/issues/{month}/papers/{paper_id}/move", response_class=HTMLResponse)
def move_paper(
    request: Request, month: str, paper_id: int, post: Posted = Depends(posted)
) -> Response:
    step = -1 if post.get("direction") == "up" else 1
    return desk_action(
        request,
        post,
        month,
        "move",
        lambda s: ordering.move_paper(s, month, paper_id, step, post.editor.email),
        anchor=f"paper-{paper_id}",
    )


@router.post("/admin/issues/{month}/recompose", response_class=HTMLResponse)
def recompose(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    title = request.app.state.settings.title
    return desk_action(
        request,
        post,
        month,
        "recompose",
        lambda s: editing.recompose(s, month, title, post.editor.email),
    )


@router.post("/admin/issues/{month}/order")
def reorder(request: Request, month: str, post: Posted = Depends(posted)) -> JSONResponse:
    """What a drag and drop on the draft page left: `order` is JSON, a list of
    `{"section": slug, "papers": [id, …]}` in the page's order. Answers the new revision."""
    month = month_or_404(month)
    try:
        raw = json.loads(post.get("order") or "null")
        order = [
            (str(item["section"]), [int(pid) for pid in item["papers"]])
            for item in raw  # type: ignore[union-attr]
        ]
    except (ValueError, TypeError, KeyError):
        return JSONResponse({"ok": False, "error": "the order sent is not readable"}, 400)
    try:
        with session_scope(request.app.state.engine) as session:
            issue = ordering.set_order(session, month, order, post.editor.email)
            revision = issue.revision
    except NewsletterError as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=409)
    return JSONResponse({"ok": True, "revision": revision})
