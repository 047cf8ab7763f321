"""A real uvicorn server on a free 127.0.0.1 port, in a thread, for tests and benchmarks
that need genuine HTTP (concurrency, a browser, a load client)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from newsletter.web.server import uvicorn_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(
    app: ASGIApp, port: int | None = None, timeout: float = 20, **options: object
) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (http://127.0.0.1:PORT).

    An app from `create_app` is served as `newsletter serve` serves it (trusted proxies,
    redacted access log); `options` go to uvicorn.Config."""
    port = port or free_port()
    options = {"log_level": "warning", "access_log": False, "lifespan": "off", **options}
    settings = getattr(getattr(app, "state", None), "settings", None)
    if settings is not None:
        config = uvicorn_config(app, settings, "127.0.0.1", port, **options)
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
