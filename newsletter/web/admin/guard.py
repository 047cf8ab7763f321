"""Who may use the desk: 404 when no editor and no token is configured (the desk does not
exist), a redirect to sign-in (GET) or 403 (POST) without a session, 403 for a POST whose
CSRF token is missing or wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from newsletter.desk.auth import Editor, csrf_ok, desk_enabled, editor_for_cookie
from newsletter.settings import Settings
from newsletter.web.pages import render_page

SESSION_COOKIE = "newsletter_desk"
COOKIE_PATH = "/admin"
# The same desk session, sent to the issue previews (`/issues/...`), where drafts need it.
PREVIEW_COOKIE = "newsletter_admin"
PREVIEW_COOKIE_PATH = "/issues"
MAX_FIELDS = 300


def set_session_cookies(response: Response, settings: Settings, cookie: str) -> None:
    """One desk session, two cookie paths (the desk and the previews): signing out ends
    both, since the server revokes the session itself."""
    for name, path in ((SESSION_COOKIE, COOKIE_PATH), (PREVIEW_COOKIE, PREVIEW_COOKIE_PATH)):
        response.set_cookie(
            name,
            cookie,
            max_age=int(settings.session_hours * 3600),
            path=path,
            httponly=True,
            samesite="strict",
            secure=settings.base_url.startswith("https://"),
        )


def clear_session_cookies(response: Response) -> None:
    for name, path in ((SESSION_COOKIE, COOKIE_PATH), (PREVIEW_COOKIE, PREVIEW_COOKIE_PATH)):
        response.delete_cookie(name, path=path, httponly=True, samesite="strict")


def require_desk(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    if not desk_enabled(settings):
        raise HTTPException(404)
    return settings


def current_editor(request: Request) -> Editor:
    settings = require_desk(request)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    editor = None
    if cookie:
        with Session(request.app.state.engine) as session:
            editor = editor_for_cookie(session, settings, cookie)
    if editor is None:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                303,
                "Please sign in.",
                headers={"Location": f"/admin/sign-in?next={quote(target, safe='')}"},
            )
        raise HTTPException(403, "Your session has ended: please sign in again.")
    return editor


@dataclass(frozen=True)
class Posted:
    editor: Editor
    form: FormData

    def get(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value if isinstance(value, str) else default


async def read_desk_form(request: Request, max_files: int = 0) -> FormData:
    try:
        return await request.form(max_fields=MAX_FIELDS, max_files=max_files)
    except (StarletteHTTPException, MultiPartException):
        raise HTTPException(400, "The form could not be read.") from None


async def posted(request: Request) -> Posted:
    """A desk form post by a signed-in editor with a valid CSRF token."""
    editor = current_editor(request)
    form = await read_desk_form(request, max_files=1)
    token = form.get("csrf_token", "")
    if not isinstance(token, str) or not csrf_ok(request.app.state.settings, editor, token):
        raise HTTPException(
            403,
            "This form has expired or did not come from the desk. Reload the page and try again.",
        )
    return Posted(editor, form)


def desk_page(
    request: Request, editor: Editor | None, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return render_page(
        request,
        f"admin/{template}",
        status_code=status_code,
        editor=editor,
        csrf=editor.csrf_token(settings) if editor else "",
        **context,
    )


def back_to(url: str) -> RedirectResponse:
    """After a successful post: see the result with a GET (post/redirect/get)."""
    return RedirectResponse(url, status_code=303)
