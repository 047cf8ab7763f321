"""Subscribers and papers on the desk, and the audit log page."""

from __future__ import annotations

import io
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from newsletter import audience, audit
from newsletter.db import session_scope
from newsletter.desk import papers as desk_papers
from newsletter.desk import people
from newsletter.desk.auth import Editor
from newsletter.errors import NewsletterError
from newsletter.months import MONTH_RE
from newsletter.papers.sources import FORMATS
from newsletter.papers.store import list_papers
from newsletter.web.admin.guard import Posted, back_to, current_editor, desk_page, posted
from subscribers.csv_io import CsvImportError, write_export
from subscribers.lifecycle import SubscriberError
from subscribers.models import SubscriberStatus

router = APIRouter()
DONE = {
    "topics": "Topics saved.",
    "suppress": "Suppressed: this address gets no more mail.",
    "erase": "Erased: the person and everything naming them is gone.",
    "add": "Subscriber added.",
    "import": "Imported {n} subscriber(s).",
}


def _offset(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        return 0


@router.post("/admin/subscribers/add", response_class=HTMLResponse)
def add_one(request: Request, post: Posted = Depends(posted)) -> Response:
    """One person, by double opt-in or vouched for by the editor (the same as the CLI)."""
    email = post.get("email").strip()
    vouched = post.get("vouched") == "yes"
    topics = [str(t) for t in post.form.getlist("topics")]
    try:
        result = audience.add_subscriber(
            request.app.state.engine, request.app.state.settings, email, topics, confirmed=vouched
        )
    except SubscriberError as exc:
        return _subscribers_page(request, post.editor, 400, error=f"{email!r}: {exc}")
    with session_scope(request.app.state.engine) as session:
        audit.record(
            session,
            post.editor.email,
            "subscriber.add",
            result.subscriber.email,
            "vouched: consent vouched for by the editor" if vouched else "confirmation email",
        )
    return back_to("/admin/subscribers?done=add")


@router.post("/admin/subscribers/import", response_class=HTMLResponse)
async def import_csv(request: Request, post: Posted = Depends(posted)) -> Response:
    """A CSV through the CLI's importer: every row checked first, all or nothing."""
    upload = post.form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return _subscribers_page(request, post.editor, 400, error="Choose a CSV file.")
    try:
        text = (await upload.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        return _subscribers_page(request, post.editor, 400, error="The file is not UTF-8 text.")
    vouched = post.get("vouched") == "yes"
    try:
        report = await run_in_threadpool(
            audience.import_subscribers,
            request.app.state.engine,
            request.app.state.settings,
            text,
            confirmed=vouched,
        )
    except CsvImportError as exc:
        return _subscribers_page(request, post.editor, 400, error=f"{upload.filename}: {exc}")
    detail = f"{report.imported} imported" + (
        ", vouched: consent vouched for by the editor"
        if vouched
        else f", {report.confirmations_sent} confirmation email(s) sent"
    )
    with session_scope(request.app.state.engine) as session:
        audit.record(session, post.editor.email, "subscribers.import", upload.filename, detail)
    return back_to(f"/admin/subscribers?done=import&n={report.imported}")


@router.get("/admin/subscribers", response_class=HTMLResponse)
def subscribers(request: Request, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    return _subscribers_page(request, editor)


def _subscribers_page(
    request: Request, editor: Editor, status_code: int = 200, error: str = ""
) -> HTMLResponse:
    q = request.query_params
    query, status, topic = q.get("q", ""), q.get("status", ""), q.get("topic", "")
    with Session(request.app.state.engine) as session:
        rows, total = people.search(
            session, query=query, status=status, topic=topic, offset=_offset(request)
        )
        counts = people.counts(session)
        catalog = audience.topic_catalog(session)
    return desk_page(
        request,
        editor,
        "subscribers.html",
        status_code,
        error=error,
        rows=rows,
        total=total,
        counts=counts,
        topics=catalog,
        topic_names={t.slug: t.name for t in catalog},
        statuses=[str(s) for s in SubscriberStatus],
        query=query,
        status=status,
        topic=topic,
        offset=_offset(request),
        page_size=people.PAGE_SIZE,
        notice=DONE.get(q.get("done", ""), "").format(n=q.get("n", "0")[:9]),
    )


@router.post("/admin/subscribers/export.csv")
def export_csv(request: Request, post: Posted = Depends(posted)) -> Response:
    """A POST (with its CSRF token), because the export is audited: GET never writes."""
    out = io.StringIO()
    with session_scope(request.app.state.engine) as session:
        count = write_export(session, out)
        audit.record(session, post.editor.email, "subscribers.export", "", f"{count} rows")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


def _subscriber_page(
    request: Request, editor: Editor, subscriber_id: int, error: str = "", status_code: int = 200
) -> HTMLResponse:
    with Session(request.app.state.engine) as session:
        try:
            found = people.detail(session, subscriber_id)
        except NewsletterError:
            raise HTTPException(404) from None
        catalog = audience.topic_catalog(session)
    return desk_page(
        request,
        editor,
        "subscriber.html",
        status_code,
        d=found,
        topics=catalog,
        topic_names={t.slug: t.name for t in catalog},
        chosen=set(found.topics),
        error=error,
        notice=DONE.get(request.query_params.get("done", ""), ""),
    )


@router.get("/admin/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber(
    request: Request, subscriber_id: int, editor: Editor = Depends(current_editor)
) -> HTMLResponse:
    return _subscriber_page(request, editor, subscriber_id)


def _act(
    request: Request,
    post: Posted,
    subscriber_id: int,
    action: Callable[[Session], object],
    then: str,
) -> Response:
    """Run one desk function on a subscriber in a transaction; a refusal shows their page
    with the reason, success goes to `then`."""
    try:
        with session_scope(request.app.state.engine) as session:
            action(session)
    except NewsletterError as exc:
        return _subscriber_page(request, post.editor, subscriber_id, str(exc), 400)
    return back_to(then)


@router.post("/admin/subscribers/{subscriber_id}/topics", response_class=HTMLResponse)
def change_topics(request: Request, subscriber_id: int, post: Posted = Depends(posted)) -> Response:
    topics = [str(t) for t in post.form.getlist("topics")]
    return _act(
        request,
        post,
        subscriber_id,
        lambda s: people.change_topics(s, subscriber_id, topics, post.editor.email),
        f"/admin/subscribers/{subscriber_id}?done=topics",
    )


@router.post("/admin/subscribers/{subscriber_id}/suppress", response_class=HTMLResponse)
def suppress(request: Request, subscriber_id: int, post: Posted = Depends(posted)) -> Response:
    return _act(
        request,
        post,
        subscriber_id,
        lambda s: people.suppress(s, subscriber_id, post.get("reason"), post.editor.email),
        f"/admin/subscribers/{subscriber_id}?done=suppress",
    )


@router.post("/admin/subscribers/{subscriber_id}/erase", response_class=HTMLResponse)
def erase(request: Request, subscriber_id: int, post: Posted = Depends(posted)) -> Response:
    key = audience.suppression_key(request.app.state.settings)
    return _act(
        request,
        post,
        subscriber_id,
        lambda s: people.erase(
            s,
            subscriber_id,
            post.get("confirm_email"),
            post.editor.email,
            suppression_key=key,
            outbox_dir=request.app.state.settings.outbox_dir,
        ),
        "/admin/subscribers?done=erase",
    )


@router.get("/admin/papers", response_class=HTMLResponse)
def papers(request: Request, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    return _papers_page(request, editor)


def _papers_page(
    request: Request, editor: Editor, status_code: int = 200, **context: object
) -> HTMLResponse:
    with Session(request.app.state.engine) as session:
        months = desk_papers.months(session)
        month = request.query_params.get("month", "") or (months[0][0] if months else "")
        if month and not MONTH_RE.match(month):
            raise HTTPException(404)
        listed = list_papers(session, month) if month else []
        names = {t.slug: t.name for t in audience.topic_catalog(session)}
    context.setdefault("report", None)
    context.setdefault("error", "")
    context.setdefault("max_upload_mb", request.app.state.settings.max_body_bytes / 1024 / 1024)
    return desk_page(
        request,
        editor,
        "papers.html",
        status_code,
        months=months,
        month=month,
        papers=listed,
        names=names,
        formats=FORMATS,
        **context,
    )


@router.post("/admin/papers/import", response_class=HTMLResponse)
async def import_papers(request: Request, post: Posted = Depends(posted)) -> Response:
    upload = post.form.get("file")
    fmt = post.get("format", "auto")
    if fmt not in FORMATS:
        return _papers_page(request, post.editor, 400, error=f"format must be one of {FORMATS}")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return _papers_page(request, post.editor, 400, error="Choose a file to import.")
    data = await upload.read()  # bounded by the app's body cap (NEWSLETTER_MAX_BODY_BYTES)

    report = await run_in_threadpool(
        desk_papers.import_upload,
        request.app.state.engine,
        upload.filename,
        data,
        fmt,
        post.editor.email,
    )
    status_code = 400 if report.error else 200
    return await run_in_threadpool(_papers_page, request, post.editor, status_code, report=report)


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_log(request: Request, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    action = request.query_params.get("action", "")
    kind = request.query_params.get("kind", "")
    kind = kind if kind in audit.ACTOR_KINDS else ""
    with Session(request.app.state.engine) as session:
        entries, total = audit.entries(session, offset=_offset(request), action=action, kind=kind)
    return desk_page(
        request,
        editor,
        "audit.html",
        entries=entries,
        total=total,
        action=action,
        kind=kind,
        kinds=audit.ACTOR_KINDS,
        offset=_offset(request),
    )
