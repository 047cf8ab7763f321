"""The "start here" reading list on the desk: add, reorder, reword, remove (all audited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from newsletter.db import session_scope
from newsletter.desk import start_here
from newsletter.desk.auth import Editor
from newsletter.errors import NewsletterError
from newsletter.web.admin.guard import Posted, back_to, current_editor, desk_page, posted

router = APIRouter()
DONE = {
    "add": "Added to the list.",
    "move": "Moved.",
    "why": "Saved.",
    "remove": "Removed from the list.",
}


def _page(request: Request, editor: Editor, status_code: int = 200, error: str = "", **form):
    with Session(request.app.state.engine) as session:
        rows = start_here.items(session)
    return desk_page(
        request,
        editor,
        "start_here.html",
        status_code,
        rows=rows,
        error=error,
        notice=DONE.get(request.query_params.get("done", ""), "") if not error else "",
        reference=form.get("reference", ""),
        why=form.get("why", ""),
    )


@router.get("/admin/start-here", response_class=HTMLResponse)
def start_here_page(request: Request, editor: Editor = Depends(current_editor)) -> HTMLResponse:
    return _page(request, editor)


@router.post("/admin/start-here/add", response_class=HTMLResponse)
async def add(request: Request, post: Posted = Depends(posted)) -> Response:
    reference, why = post.get("reference"), post.get("why")
    try:
        await run_in_threadpool(
            start_here.add,
            request.app.state.engine,
            request.app.state.settings,
            reference,
            why,
            post.editor.email,
        )
    except NewsletterError as exc:
        return _page(request, post.editor, 400, str(exc), reference=reference, why=why)
    return back_to("/admin/start-here?done=add")


@router.post("/admin/start-here/{item_id}", response_class=HTMLResponse)
def change(request: Request, item_id: int, post: Posted = Depends(posted)) -> Response:
    """One form per paper; its buttons say which change (`up`, `down`, `why`, `remove`)."""
    action = post.get("action")
    try:
        with session_scope(request.app.state.engine) as session:
            if action in ("up", "down"):
                start_here.move(session, item_id, -1 if action == "up" else 1, post.editor.email)
                done = "move"
            elif action == "why":
                start_here.set_why(session, item_id, post.get("why"), post.editor.email)
                done = "why"
            elif action == "remove":
                start_here.remove(session, item_id, post.editor.email)
                done = "remove"
            else:
                raise NewsletterError(f"unknown action {action[:20]!r}")
    except NewsletterError as exc:
        return _page(request, post.editor, 400, str(exc))
    return back_to(f"/admin/start-here?done={done}")
