"""The desk's routes for summaries a language model drafted: Accept (as written, or edited)
and Redraft; thin over `newsletter.desk.drafts`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.desk import drafts
from newsletter.errors import NewsletterError
from newsletter.web.admin.guard import Posted, back_to, posted
from newsletter.web.admin.issues import desk_action, issue_page_response, month_or_404

router = APIRouter()


@router.post("/admin/issues/{month}/papers/{paper_id}/draft/accept", response_class=HTMLResponse)
def accept(request: Request, month: str, paper_id: int, post: Posted = Depends(posted)) -> Response:
    """Accept the draft; with a `summary` field, the editor's edit of it."""
    edited = post.get("summary") if "summary" in post.form else None
    return desk_action(
        request,
        post,
        month,
        "accept",
        lambda s: drafts.accept_draft(s, month, paper_id, post.editor.email, edited),
    )


@router.post("/admin/issues/{month}/papers/{paper_id}/draft/redraft", response_class=HTMLResponse)
def redraft(
    request: Request, month: str, paper_id: int, post: Posted = Depends(posted)
) -> Response:
    """Ask the model again for this paper (outside a transaction: it waits on the network)."""
    month = month_or_404(month)
    try:
        drafts.redraft(
            request.app.state.engine, request.app.state.settings, month, paper_id, post.editor.email
        )
    except NewsletterError as exc:
        return issue_page_response(request, post.editor, month, error=str(exc), status_code=400)
    return back_to(f"/admin/issues/{month}?done=redraft#paper-{paper_id}")
