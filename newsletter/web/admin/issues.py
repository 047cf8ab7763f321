"""The issue pages of the desk: list, draft editing, preview, release, progress, report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from newsletter import audience, audit, revisions
from newsletter.approval import release_summary
from newsletter.db import session_scope
from newsletter.delivery import issue_status
from newsletter.desk import editing, previews
from newsletter.desk.auth import Editor
from newsletter.desk.progress import progress as send_progress
from newsletter.desk.report import send_report
from newsletter.errors import NewsletterError
from newsletter.issues import (
    COMPOSABLE_STATUSES,
    EmptyMonthError,
    compose_issue,
    load_issue_contents,
)
from newsletter.models import Issue, IssueStatus, JobRun
from newsletter.months import MONTH_RE, month_label, previous_month, shift_month
from newsletter.papers.draft_status import current_drafts, unreviewed
from newsletter.papers.tagging import flag_for
from newsletter.rendering import personalize, preview_substitutions, render_issue_variant
from newsletter.rendering.note import note_html
from newsletter.settings import Settings
from newsletter.web.admin.guard import Posted, back_to, current_editor, desk_page, posted
from newsletter.web.archive import parse_topics
from newsletter.web.security import EMAIL_FRAME_HEADERS

router = APIRouter()
DONE = {
    "subject": "Subject saved.",
    "note": "Editor's note saved.",
    "lead": "Lead paper saved.",
    "paper": "Paper saved.",
    "drop": "Paper dropped from this issue.",
    "restore": "Revision restored (as a new revision).",
    "saved": "Changes saved.",
    "move": "Order saved.",
    "add": "Paper added.",
    "recompose": "Draft composed again from the papers.",
    "test": "Test copy sent.",
    "tests": "Test copies sent.",
    "approve": "Approved: the clock starts the send within a minute.",
    "schedule": "Scheduled.",
    "cancel": "Schedule cancelled; the issue is a draft again.",
    "pause": "Paused. Nobody gets the issue twice when it resumes.",
    "resume": "Resuming: the clock picks it up within a minute.",
    "compose": "Draft composed.",
    "accept": "Summary accepted: it is the paper's summary now.",  # issue 27
    "redraft": "Summary drafted again: review it below.",
}


def month_or_404(month: str) -> str:
    """The month of a desk URL, or 404 (a malformed month is no page)."""
    if not MONTH_RE.match(month):
        raise HTTPException(404)
    return month


def issue_or_404(session: Session, month: str) -> Issue:
    issue = session.exec(select(Issue).where(Issue.month == month_or_404(month))).first()
    if issue is None:
        raise HTTPException(404)
    return issue


@router.get("/admin/issues", response_class=HTMLResponse)
def issue_list(request: Request, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    return _issue_list(request, editor)


def _issue_list(
    request: Request,
    editor: Editor,
    error: str = "",
    status_code: int = 200,
    *,
    empty_month: str = "",
) -> HTMLResponse:
    engine = request.app.state.engine
    with Session(engine) as session:
        issues = session.exec(select(Issue).order_by(col(Issue.month).desc())).all()
        # The month after the newest issue, or the one the monthly job would send now.
        upcoming = shift_month(issues[0].month, 1) if issues else previous_month(datetime.now(UTC))
        counts = {i.month: issue_status(session, i.month, problem_limit=0).counts for i in issues}
        runs = session.exec(
            select(JobRun).where(JobRun.job != "clock").order_by(col(JobRun.id).desc()).limit(30)
        ).all()
    return desk_page(
        request,
        editor,
        "issues.html",
        status_code,
        issues=issues,
        counts=counts,
        runs=runs,
        upcoming=upcoming,
        empty_month=empty_month,
        error=error,
        notice=DONE.get(request.query_params.get("done", ""), ""),
    )


@router.post("/admin/issues/compose", response_class=HTMLResponse)
def compose(request: Request, post: Posted = Depends(posted)) -> Response:
    settings: Settings = request.app.state.settings
    month = post.get("month").strip()
    try:
        with session_scope(request.app.state.engine) as session:
            result = compose_issue(session, month, settings.title, actor=post.editor.email)
            audit.record(
                session, post.editor.email, "issue.compose", month, f"{result.total} papers"
            )
    except EmptyMonthError:
        return _issue_list(
            request,
            post.editor,
            f"No papers to send for {month_label(month)} yet.",
            400,
            empty_month=month,
        )
    except NewsletterError as exc:
        return _issue_list(request, post.editor, str(exc), 400)
    return back_to(f"/admin/issues/{month}?done=compose")


def issue_page_response(
    request: Request, editor: Editor, month: str, *, error: str = "", status_code: int = 200
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    engine = request.app.state.engine
    with Session(engine) as session:
        issue = issue_or_404(session, month)
        contents = load_issue_contents(session, issue)
        catalog = audience.topic_catalog(session)
        editable = issue.status in COMPOSABLE_STATUSES
        addable = editing.addable_papers(session, month) if editable else []
        runs = session.exec(
            select(JobRun).where(JobRun.month == month).order_by(col(JobRun.id).desc()).limit(20)
        ).all()
        summary = release_summary(session, settings, month)
        # issue 27: summaries a language model drafted, and those no editor reviewed yet
        drafts = current_drafts(session, [e.paper.id for e in contents.entries if e.paper.id])
        pending = unreviewed(session, issue)
        names = {t.slug: t.name for t in catalog}
        audience_variants = previews.audience_by_variant(session, issue) if editable else {}
        variant_options = [
            (v, f"{previews.variant_label(v, names)} ({n:,} subscriber{'s' if n != 1 else ''})")
            for v, n in sorted(audience_variants.items(), key=lambda kv: (-kv[1], kv[0]))
        ][: previews.MAX_VARIANTS_SHOWN]
    progress = send_progress(engine, month, settings.schedule_check_seconds)
    return desk_page(
        request,
        editor,
        "issue.html",
        status_code,
        issue=issue,
        entries=contents.entries,
        sections=_sections(contents.entries),
        flags={e.paper.id: flag_for(e.topics, e.paper.topic_confidence) for e in contents.entries},
        topics=catalog,
        topic_names={t.slug: t.name for t in catalog},
        editable=editable,
        addable=addable,
        runs=runs,
        progress=progress,
        note_preview=note_html(issue.editor_note),
        editors=settings.editor_emails,
        summary=summary,
        variant_options=variant_options,
        drafts=drafts,
        unreviewed_drafts=pending,
        unreviewed_ids={p.id for p, _ in pending},
        llm_mode=settings.llm_summaries,
        withdrawn=issue.status == IssueStatus.DRAFT
        and issue.status_reason.startswith(revisions.WITHDRAWN),
        error=error,
        notice=DONE.get(request.query_params.get("done", ""), ""),
        undo=_undo_revision(request, issue),
        now=datetime.now(UTC),
    )


def _sections(entries: tuple) -> list[tuple[str, list]]:  # type: ignore[type-arg]
    """Entries grouped by section, in the issue's order (Jinja's groupby would sort them)."""
    groups: dict[str, list] = {}  # type: ignore[type-arg]
    for entry in entries:
        groups.setdefault(entry.section, []).append(entry)
    return list(groups.items())


def _undo_revision(request: Request, issue: Issue) -> int | None:
    """After a drop: the revision before it, which "Undo" restores (only while nothing else
    changed since, so an undo never throws later edits away)."""
    if request.query_params.get("done") != "drop" or issue.status not in COMPOSABLE_STATUSES:
        return None
    before = request.query_params.get("before", "")
    if not before.isdigit() or int(before) + 1 != issue.revision:
        return None
    return int(before)


@router.get("/admin/issues/{month}", response_class=HTMLResponse)
def issue_page(
    request: Request, month: str, editor: Editor = Depends(current_editor)
) -> HTMLResponse:
    return issue_page_response(request, editor, month_or_404(month))


def desk_action(
    request: Request,
    post: Posted,
    month: str,
    done: str,
    action: Callable[[Session], object],
    *,
    anchor: str = "",
) -> Response:
    """Run one desk function in a transaction; on a refusal show the page with the reason.

    Back on the page at `anchor` (the card that was edited), not at the top."""
    month = month_or_404(month)
    try:
        with session_scope(request.app.state.engine) as session:
            before = issue_or_404(session, month).revision
            action(session)
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    fragment = f"#{anchor}" if anchor else ""
    return back_to(f"/admin/issues/{month}?done={done}&before={before}{fragment}")


@router.get("/admin/issues/{month}/preview", response_class=HTMLResponse)
def preview(request: Request, month: str, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    topics = parse_topics(request.query_params.getlist("topics"))
    with Session(request.app.state.engine) as session:
        issue = issue_or_404(session, month)
        catalog = audience.topic_catalog(session)
        known = {t.slug for t in catalog}
        bad = [t for t in topics if t not in known]
        if bad:
            raise HTTPException(400, f"Unknown topic {bad[0]!r}.")
        names = {t.slug: t.name for t in catalog}
        variant = previews.variant_of(session, issue, topics)
        rows = previews.variant_rows(session, issue, settings, names, [variant])
        rendered = render_issue_variant(session, issue, variant, settings)
        text = personalize(rendered, preview_substitutions(settings, issue, variant)).text
    query = urlencode({"topics": ",".join(topics)}) if topics else ""
    return desk_page(
        request,
        editor,
        "preview.html",
        issue=issue,
        topics=catalog,
        chosen=set(topics),
        variant=variant,
        variant_label=previews.variant_label(variant, names),
        rows=rows,
        text_version=text,
        frame_src=f"/admin/issues/{month}/email" + (f"?{query}" if query else ""),
    )


@router.get("/admin/issues/{month}/email", response_class=HTMLResponse)
def email(request: Request, month: str, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    """The email alone, for the preview frames (our own pages may frame it)."""
    settings: Settings = request.app.state.settings
    topics = parse_topics(request.query_params.getlist("topics"))
    with Session(request.app.state.engine) as session:
        issue = issue_or_404(session, month)
        try:
            variant = previews.variant_of(session, issue, topics)
            rendered = render_issue_variant(session, issue, variant, settings)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        html = personalize(rendered, preview_substitutions(settings, issue, variant)).html
    return HTMLResponse(html, headers=EMAIL_FRAME_HEADERS)


@router.get("/admin/issues/{month}/report", response_class=HTMLResponse)
def report(request: Request, month: str, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    with Session(request.app.state.engine) as session:
        issue = issue_or_404(session, month)
        page = send_report(session, month)
    return desk_page(
        request,
        editor,
        "report.html",
        issue=issue,
        report=page,
        sending=issue.status == IssueStatus.SENDING,
    )
