"""A local stand-in for paper sources: the arXiv API replaying recorded answers, and feeds
that can fail, recover or answer slowly. A real HTTP server on 127.0.0.1, for tests.

    with FakeSources(arxiv_pages=[page1, page2]) as fake:
        fake.add_feed("/lab.atom", body, script=[503, 503])   # two failures, then the feed
        fake.add_feed("/slow.atom", body, delay=2.0)           # answers after 2 s
        ... NEWSLETTER_ARXIV_API_URL=fake.arxiv_url, feed URL fake.url + "/lab.atom"
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class _Feed:
    body: bytes
    script: list[int] = field(default_factory=list)  # statuses answered first, in order
    delay: float = 0.0
    hits: int = 0
    announce_length: bool = True  # False: no Content-Length, the body ends when the socket closes


class FakeSources:
    def __init__(self, arxiv_pages: list[bytes] | None = None) -> None:
        self.arxiv_pages = list(arxiv_pages or [])
        self.arxiv_queries: list[dict[str, list[str]]] = []
        self.arxiv_status = 200
        self.feeds: dict[str, _Feed] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.arxiv_url = f"{self.url}/api/query"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_feed(
        self,
        path: str,
        body: bytes,
        *,
        script: list[int] | None = None,
        delay: float = 0.0,
        announce_length: bool = True,
    ) -> str:
        self.feeds[path] = _Feed(body, list(script or []), delay, announce_length=announce_length)
        return self.url + path

    def hits(self, path: str) -> int:
        return self.feeds[path].hits

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path == "/api/query":
            query = parse_qs(parts.query)
            with self.lock:
                self.arxiv_queries.append(query)
                status = self.arxiv_status
            if status != 200:
                handler.send_error(status)
                return
            # Page n answers start = n * page size (the recorded pages have equal sizes).
            size = int(query.get("max_results", ["1"])[0]) or 1
            start = int(query.get("start", ["0"])[0])
            index = min(start // size, len(self.arxiv_pages) - 1)
            self._send(handler, self.arxiv_pages[index])
            return
        feed = self.feeds.get(parts.path)
        if feed is None:
            handler.send_error(404)
            return
        with self.lock:
            feed.hits += 1
            status = feed.script.pop(0) if feed.script else 200
        if feed.delay:
            time.sleep(feed.delay)
        if status != 200:
            handler.send_error(status)
            return
        self._send(handler, feed.body, announce_length=feed.announce_length)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, body: bytes, *, announce_length: bool = True
    ) -> None:
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/atom+xml; charset=utf-8")
            if announce_length:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def __enter__(self) -> FakeSources:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
