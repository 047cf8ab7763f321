"""An issue's history on the desk: every revision (who, when, what changed), the difference
between any two, "restore this revision", and the undo a dropped paper offers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from newsletter import revisions
from newsletter.desk import document
from newsletter.desk.auth import Editor
from newsletter.errors import NewsletterError
from newsletter.issues import COMPOSABLE_STATUSES
from newsletter.web.admin.guard import Posted, current_editor, desk_page, posted
from newsletter.web.admin.issues import desk_action, issue_or_404

router = APIRouter()


def _number(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        raise HTTPException(400, "A revision is a number.") from None


@router.get("/admin/issues/{month}/history", response_class=HTMLResponse)
def history(request: Request, month: str, editor: Editor = Depends(current_editor)) -> Response:
    """Revisions newest first; `?a=N&b=M` shows what changed from N to M."""
    a, b = _number(request.query_params.get("a")), _number(request.query_params.get("b"))
    with Session(request.app.state.engine) as session:
        issue = issue_or_404(session, month)
        rows = revisions.history(session, issue.id, limit=200)  # type: ignore[arg-type]
        diff = None
        if a is not None and b is not None:
            old = revisions.get(session, issue.id, a)  # type: ignore[arg-type]
            new = revisions.get(session, issue.id, b)  # type: ignore[arg-type]
            if old is None or new is None:
                raise HTTPException(404, "No such revision.")
            diff = revisions.changes(old.snapshot, new.snapshot) or ["nothing changed"]
    return desk_page(
        request,
        editor,
        "history.html",
        issue=issue,
        revisions=rows,
        diff=diff,
        a=a,
        b=b,
        editable=issue.status in COMPOSABLE_STATUSES,
    )


@router.post("/admin/issues/{month}/restore", response_class=HTMLResponse)
def restore(request: Request, month: str, post: Posted = Depends(posted)) -> Response:
    """Restore a revision (also the undo of a drop): a new revision, audited."""

    def act(session: Session) -> None:
        number = _number(post.get("revision"))
        if number is None:
            raise NewsletterError("choose a revision to restore")
        document.restore_revision(session, month, number, post.editor.email)

    return desk_action(request, post, month, "restore", act)
