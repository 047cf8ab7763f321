"""Signing in to the desk and out again.

`POST /admin/sign-in` answers the same page for any address (no enumeration of editors) and
is rate-limited per client. The mailed link opens a page with a button; only its POST spends
the link, because mail scanners open every link they see.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from newsletter import audit
from newsletter.db import session_scope
from newsletter.desk import auth
from newsletter.settings import Settings
from newsletter.web.admin.guard import (
    SESSION_COOKIE,
    Posted,
    back_to,
    clear_session_cookies,
    desk_page,
    posted,
    read_desk_form,
    require_desk,
    set_session_cookies,
)
from newsletter.web.pages import error_page
from newsletter.web.ratelimit import ClientRateLimiter
from newsletter.web.security import client_address, is_cross_site

router = APIRouter()
SIGN_IN_LIMIT = 10  # sign-in posts per client per 10 minutes: enough for typos, not guessing


def _too_many(request: Request) -> float:
    limiter = getattr(request.app.state, "desk_sign_in_limiter", None)
    if limiter is None:  # one per app, like the subscribe limiter
        limiter = request.app.state.desk_sign_in_limiter = ClientRateLimiter(SIGN_IN_LIMIT, 600)
    return limiter.hit(client_address(request))


def _refused(request: Request) -> HTMLResponse | None:
    """The answer to a sign-in post from another site or past the per-client limit."""
    if is_cross_site(request):
        return error_page(request, 403, "Not allowed", "Please use the sign-in form.")
    if _too_many(request):
        return error_page(request, 429, "Too many requests", "Please try again in a few minutes.")
    return None


def _next(value: object) -> str:
    """Only a path on the desk: never an open redirect."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/admin/") and not text.startswith("//") else "/admin/issues"


def _signed_in(
    request: Request, settings: Settings, email: str, method: str, target: str
) -> Response:
    with session_scope(request.app.state.engine) as session:
        cookie = auth.start_session(session, settings, email)
        audit.record(session, email, "desk.sign_in", "", f"{method} from {client_address(request)}")
    response = back_to(_next(target))
    set_session_cookies(response, settings, cookie)
    return response


@router.get("/admin", response_class=HTMLResponse)
def desk_home(request: Request, settings: Settings = Depends(require_desk)) -> Response:
    return back_to("/admin/issues")


@router.get("/admin/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, settings: Settings = Depends(require_desk)) -> HTMLResponse:
    return desk_page(
        request,
        None,
        "sign_in.html",
        next=_next(request.query_params.get("next")),
        token_enabled=bool(settings.admin_token),
        error="",
    )


@router.post("/admin/sign-in", response_class=HTMLResponse)
async def request_link(request: Request, settings: Settings = Depends(require_desk)) -> Response:
    refused = _refused(request)
    if refused is not None:
        return refused
    form = await read_desk_form(request)
    raw = form.get("email", "")
    target = _next(form.get("next"))
    editor = auth.editor_address(settings, raw if isinstance(raw, str) else "")
    if editor is not None:
        with session_scope(request.app.state.engine) as session:
            secret = auth.create_sign_in_link(session, settings, editor)
        url = f"{settings.base_url}/admin/sign-in/{secret}?next={quote(target, safe='/')}"
        auth.mail_sign_in_link(settings, editor, url)
    return desk_page(request, None, "sign_in_sent.html", minutes=settings.sign_in_link_minutes)


@router.post("/admin/sign-in/token", response_class=HTMLResponse)
async def token_sign_in(request: Request, settings: Settings = Depends(require_desk)) -> Response:
    refused = _refused(request)
    if refused is not None:
        return refused
    form = await read_desk_form(request)
    token = form.get("token", "")
    if not auth.admin_token_matches(settings, token if isinstance(token, str) else ""):
        return desk_page(
            request,
            None,
            "sign_in.html",
            403,
            next=_next(form.get("next")),
            token_enabled=bool(settings.admin_token),
            error="That is not the admin token.",
        )
    return _signed_in(
        request, settings, auth.ADMIN_TOKEN_ACTOR, "admin token", str(form.get("next", ""))
    )


@router.get("/admin/sign-in/{secret}", response_class=HTMLResponse)
def link_page(
    request: Request, secret: str, settings: Settings = Depends(require_desk)
) -> HTMLResponse:
    with Session(request.app.state.engine) as session:
        email = auth.peek_sign_in_link(session, secret)
    if email is None:
        return _link_gone(request, settings)
    return desk_page(
        request,
        None,
        "sign_in_link.html",
        email=email,
        secret=secret,
        next=_next(request.query_params.get("next")),
    )


def _link_gone(request: Request, settings: Settings) -> HTMLResponse:
    """Not a dead end: the page leads straight back to asking for a new link."""
    return desk_page(
        request, None, "sign_in_gone.html", 400, minutes=f"{settings.sign_in_link_minutes:g}"
    )


@router.post("/admin/sign-in/{secret}", response_class=HTMLResponse)
async def use_link(
    request: Request, secret: str, settings: Settings = Depends(require_desk)
) -> Response:
    if is_cross_site(request):
        return error_page(request, 403, "Not allowed", "Please use the button on the sign-in page.")
    form = await read_desk_form(request)
    with session_scope(request.app.state.engine) as session:
        email = auth.use_sign_in_link(session, settings, secret)
    if email is None:
        return _link_gone(request, settings)
    return _signed_in(request, settings, email, "mailed link", str(form.get("next", "")))


@router.post("/admin/sign-out", response_class=HTMLResponse)
def sign_out(request: Request, post: Posted = Depends(posted)) -> Response:
    settings: Settings = request.app.state.settings
    with session_scope(request.app.state.engine) as session:
        auth.end_session(session, settings, request.cookies.get(SESSION_COOKIE, ""))
        audit.record(session, post.editor.email, "desk.sign_out")
    response = back_to("/admin/sign-in")
    clear_session_cookies(response)
    return response
