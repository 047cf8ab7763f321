"""Response headers every page carries, and the few request checks routes share.

PUBLIC_CACHE is for pages that are the same for everybody (archive, feed, issue pages).

Headers are added by a plain ASGI middleware (no per-request task switching, unlike
`BaseHTTPMiddleware`). A route that must be framed by our own pages (the email inside the
preview and outbox iframes) sets its own `Content-Security-Policy` and `X-Frame-Options`;
the middleware only fills in headers a response did not set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
# Email HTML is built from inline styles and may load remote images; it never runs script
# and may only be framed by our own preview and outbox pages.
EMAIL_FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
EMAIL_FRAME_HEADERS = {"Content-Security-Policy": EMAIL_FRAME_CSP, "X-Frame-Options": "SAMEORIGIN"}

PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}

_DEFAULTS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
# Pages behind a token (preferences, unsubscribe) must never sit in a shared cache; public
# pages opt in to caching with their own Cache-Control.
_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _DEFAULTS if h[0] not in present)
                if b"cache-control" not in present and not static:
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def is_cross_site(request: Request) -> bool:
    """True for a browser form post from another site (login-less CSRF defence).

    Browsers send `Sec-Fetch-Site` and `Origin` on form posts; a request with neither (a
    mail client, curl) is not a cross-site browser request.
    """
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    ours = {
        request.app.state.settings.base_url,
        f"{request.url.scheme}://{request.headers.get('host', '')}",
    }
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" not in ours
