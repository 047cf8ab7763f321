"""The release routes of the desk: test copy, approve, schedule, cancel, pause, resume, and
the live progress of a send; thin over `newsletter.release`."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from newsletter import release
from newsletter.desk.auth import Editor
from newsletter.desk.progress import progress as send_progress
from newsletter.errors import NewsletterError
from newsletter.web.admin.guard import Posted, back_to, current_editor, posted
from newsletter.web.admin.issues import (
    desk_action,
    issue_or_404,
    issue_page_response,
    month_or_404,
)

router = APIRouter()


@router.post("/admin/issues/{month}/test", response_class=HTMLResponse)
def send_test(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    month = month_or_404(month)
    try:
        release.send_test(
            request.app.state.engine,
            request.app.state.settings,
            month,
            post.get("email"),
            post.editor.email,
        )
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    return back_to(f"/admin/issues/{month}?done=test")


@router.post("/admin/issues/{month}/approve", response_class=HTMLResponse)
def approve(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request, post, month, "approve", lambda s: release.approve_now(s, month, post.editor.email)
    )


def _parse_when(value: str) -> datetime:
    """`YYYY-MM-DDTHH:MM` from a datetime-local input, read as UTC (the page says so)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise NewsletterError(f"{value!r} is not a date and time like 2026-12-01T09:00") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.post("/admin/issues/{month}/schedule", response_class=HTMLResponse)
def schedule(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "schedule",
        lambda s: release.schedule(s, month, _parse_when(post.get("when")), post.editor.email),
    )


@router.post("/admin/issues/{month}/cancel-schedule", response_class=HTMLResponse)
def cancel_schedule(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    return desk_action(
        request,
        post,
        month,
        "cancel",
        lambda s: release.cancel_schedule(s, month, post.editor.email),
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
    return JSONResponse(send_progress(request.app.state.engine, month).as_dict())
