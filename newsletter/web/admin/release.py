"""The release routes of the desk: test copy, approve, schedule, cancel, pause, resume, and
the live progress of a send; thin over `newsletter.release`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from newsletter import approval, release
from newsletter.db import session_scope
from newsletter.desk.auth import Editor
from newsletter.desk.progress import progress as send_progress
from newsletter.errors import NewsletterError
from newsletter.web.admin.guard import Posted, back_to, current_editor, desk_page, posted
from newsletter.web.admin.issues import (
    desk_action,
    issue_or_404,
    issue_page_response,
    month_or_404,
)

router = APIRouter()


@router.post("/admin/issues/{month}/test", response_class=HTMLResponse)
def send_test(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    """Test copies to the typed addresses, for one topic set or one of each variant."""
    month = month_or_404(month)
    choice = post.get("variant", "")
    try:
        sent = approval.send_test(
            request.app.state.engine,
            request.app.state.settings,
            month,
            post.get("emails") or post.get("email"),
            post.editor.email,
            topics=[] if choice in ("", "each") else choice.split(","),
            each_variant=choice == "each",
        )
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    return back_to(f"/admin/issues/{month}?done=test&sent={len(sent)}")


def _parse_when(value: str) -> datetime:
    """`YYYY-MM-DDTHH:MM` from a datetime-local input, read as UTC (the page says so)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise NewsletterError(f"{value!r} is not a date and time like 2026-12-01T09:00") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _confirmation(
    request: Request, post: Posted, month: str, action: str, when: datetime | None
) -> Response:
    """Step one of approve/schedule: the page that says what will happen, to confirm."""
    settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = issue_or_404(session, month)
        summary = approval.release_summary(session, settings, month)
    return desk_page(
        request,
        post.editor,
        "confirm_release.html",
        issue=issue,
        summary=summary,
        action=action,
        when=when or datetime.now(UTC),
        send_now=when is None,
    )


def _confirmed(
    request: Request, post: Posted, month: str, done: str, act: Callable[[Session, int], object]
) -> Response:
    """Step two: the confirming POST names the revision it saw; a stale one is a 409."""
    try:
        revision = int(post.get("revision"))
    except ValueError:
        return issue_page_response(
            request, post.editor, month, error="the confirmation names no revision", status_code=400
        )
    try:
        with session_scope(request.app.state.engine) as session:
            act(session, revision)
    except approval.StaleRevision as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=409)
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    return back_to(f"/admin/issues/{month}?done={done}")


@router.post("/admin/issues/{month}/approve", response_class=HTMLResponse)
def approve(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    month = month_or_404(month)
    if not post.get("revision"):
        return _confirmation(request, post, month, "approve", None)
    settings = request.app.state.settings
    return _confirmed(
        request,
        post,
        month,
        "approve",
        lambda s, r: approval.approve_now(s, settings, month, r, post.editor.email),
    )


@router.post("/admin/issues/{month}/schedule", response_class=HTMLResponse)
def schedule(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    month = month_or_404(month)
    try:
        when = _parse_when(post.get("when"))
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    if not post.get("revision"):
        if when < datetime.now(UTC) - timedelta(minutes=1):
            return issue_page_response(
                request,
                post.editor,
                month,
                error=f"{when:%Y-%m-%d %H:%M} UTC is in the past; pick a later time",
                status_code=400,
            )
        return _confirmation(request, post, month, "schedule", when)
    settings = request.app.state.settings
    return _confirmed(
        request,
        post,
        month,
        "schedule",
        lambda s, r: approval.schedule(s, settings, month, when, r, post.editor.email),
    )


@router.post("/admin/issues/{month}/cancel-schedule", response_class=HTMLResponse)
def cancel_schedule(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "cancel",
        lambda s: approval.cancel_schedule(s, month, post.editor.email),
    )


@router.post("/admin/issues/{month}/pause", response_class=HTMLResponse)
def pause(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request, post, month, "pause", lambda s: release.pause(s, month, post.editor.email)
    )


@router.post("/admin/issues/{month}/resume", response_class=HTMLResponse)
def resume(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request, post, month, "resume", lambda s: release.resume(s, month, post.editor.email)
    )


@router.get("/admin/issues/{month}/progress.json")
def progress_json(
    request: Request, month: str, editor: Editor = Depends(current_editor)
) -> JSONResponse:
    with Session(request.app.state.engine) as session:
        issue_or_404(session, month)
    settings = request.app.state.settings
    progress = send_progress(request.app.state.engine, month, settings.schedule_check_seconds)
    return JSONResponse(progress.as_dict())
