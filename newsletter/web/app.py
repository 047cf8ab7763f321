"""Application factory: wires settings, the database and the route modules together."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.db import get_engine, ping
from newsletter.mail_sender import MailSender, mail_health
from newsletter.settings import REPO_ROOT, Settings, is_loopback_host
from newsletter.web import (
    admin,
    archive,
    outbox_viewer,
    preview,
    public,
    subscription,
    webhooks,
)
from newsletter.web.pages import error_page
from newsletter.web.ratelimit import ClientRateLimiter
from newsletter.web.request_guards import BodySizeLimitMiddleware, HostCheckMiddleware
from newsletter.web.security import SecurityHeadersMiddleware
from newsletter.web.writes import write_limiter

STATIC_DIR = REPO_ROOT / "newsletter" / "web" / "static"
# Per client address: generous for people (a typo or two), tight for a script.
SUBSCRIBE_LIMIT = 10
SUBSCRIBE_WINDOW_SECONDS = 600

_ERROR_HEADINGS = {404: "Page not found", 405: "Method not allowed"}


def create_app(
    settings: Settings, *, bind_host: str | None = None, mail_sender: MailSender | None = None
) -> FastAPI:
    """The app; `bind_host` is the interface it will listen on (the local outbox viewer is
    served only on a loopback one: unknown means no outbox). With a `mail_sender` (as
    `newsletter serve` runs it) queued mail goes from that process; without, from this one
    after each answer."""
    app = FastAPI(title=settings.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.mail_sender = mail_sender
    app.state.engine = get_engine(settings.database_url)
    app.state.write_limiter = write_limiter(app.state.engine)
    app.state.subscribe_limiter = ClientRateLimiter(SUBSCRIBE_LIMIT, SUBSCRIBE_WINDOW_SECONDS)
    app.state.link_limiter = ClientRateLimiter(SUBSCRIBE_LIMIT, SUBSCRIBE_WINDOW_SECONDS)
    # Added first = innermost: security headers wrap every answer, the guards' too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_host_names)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        db_ok = ping(app.state.engine)
        answer: dict[str, object] = {
            "status": "ok" if db_ok else "degraded",
            "database": "ok" if db_ok else "unreachable",
        }
        if db_ok:
            answer["mail"] = mail_health(app.state.engine, app.state.mail_sender)
        return JSONResponse(answer, status_code=200 if db_ok else 503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        heading = _ERROR_HEADINGS.get(exc.status_code, "Something went wrong")
        message = exc.detail if isinstance(exc.detail, str) else heading
        if exc.status_code == 404:
            message = "There is nothing at this address."
        return error_page(request, exc.status_code, heading, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return error_page(request, 400, "Request not understood", "Please use the forms.")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(public.router)
    app.include_router(subscription.router)
    app.include_router(archive.router)
    app.include_router(preview.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.state.local_outbox = outbox_viewer.outbox_enabled(settings) and is_loopback_host(
        bind_host or ""
    )
    if app.state.local_outbox:
        app.include_router(outbox_viewer.router)
    return app
