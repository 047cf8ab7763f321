"""App-wide request checks that run before any route: the Host header and the body size.

Plain ASGI middleware, so every route (today's and the editor's desk) gets them without
asking. The Host check stops DNS-rebinding pages from reading the site through a name that
resolves to it; the body cap stops a client from making the process hold an arbitrary body
(by `Content-Length` at once, and for a streamed body as soon as it passes the cap).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Platform health checks often come with an IP address as Host; the answer names nothing.
HOST_CHECK_EXEMPT = frozenset({"/healthz"})


def host_name(host_header: str) -> str:
    """`example.org:443` -> `example.org`; `[::1]:8000` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in HOST_CHECK_EXEMPT:
            host = host_name(Headers(scope=scope).get("host", ""))
            if host not in self.allowed:
                response = PlainTextResponse("Bad Request: unknown Host header\n", 400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised inside `receive` once a streamed body passes the cap."""


def _too_large(max_bytes: int) -> PlainTextResponse:
    return PlainTextResponse(
        f"Payload Too Large: request bodies are limited to {max_bytes} bytes\n",
        413,
        headers={"Connection": "close"},
    )


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0 or declared > self.max_bytes:
                status = _too_large(self.max_bytes) if declared >= 0 else None
                response = status or PlainTextResponse("Bad Request: Content-Length\n", 400)
                await response(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(self.max_bytes)(scope, receive, send)
