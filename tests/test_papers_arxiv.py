"""`papers fetch-arxiv` against a local HTTP server replaying recorded arXiv API answers
(no network): the month query, polite paging, one transaction for the month, API errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from newsletter.models import Paper
from newsletter.papers.arxiv import fetch_month_pages, import_arxiv_month, month_query
from newsletter.papers.store import import_paths

DATA = Path(__file__).parent / "data" / "papers"


class RecordedArxiv:
    """Serves arxiv_page_1.xml for start=0 and arxiv_page_2.xml for start=2; logs queries."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                owner.queries.append(query)
                if owner.status != 200:
                    self.send_error(owner.status)
                    return
                page = "arxiv_page_1.xml" if query["start"] == ["0"] else "arxiv_page_2.xml"
                body = (DATA / page).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/query"


@pytest.fixture
def arxiv() -> Iterator[RecordedArxiv]:
    fake = RecordedArxiv()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_month_query() -> None:
    assert month_query("2026-12", ["cs.LG", "stat.ML"]) == (
        "(cat:cs.LG OR cat:stat.ML) AND submittedDate:[202612010000 TO 202701010000]"
    )


def test_pages_politely_until_the_total(arxiv: RecordedArxiv) -> None:
    waits: list[float] = []
    pages = fetch_month_pages(
        "2026-06", ["cs.LG"], api_url=arxiv.url, page_size=2, delay=3.0, sleep=waits.append
    )
    assert len(pages) == 2 and waits == [3.0]  # one pause between the two requests
    first, second = arxiv.queries
    assert first["search_query"] == ["(cat:cs.LG) AND submittedDate:[202606010000 TO 202607010000]"]
    assert (first["start"], first["max_results"]) == (["0"], ["2"])
    assert (second["start"], second["max_results"]) == (["2"], ["2"])


def test_month_imports_in_one_transaction(engine: Engine, arxiv: RecordedArxiv) -> None:
    report = import_arxiv_month(
        engine, "2026-06", ["cs.LG"], api_url=arxiv.url, page_size=2, delay=0
    )
    assert report.error is None, report.error
    assert (report.added, report.untagged) == (3, ["A Note on Benchmarks"])
    with Session(engine) as session:
        ids = sorted(p.arxiv_id for p in session.exec(select(Paper)).all())
    assert ids == ["2606.01234", "2606.04321", "2606.07777"]
    again = import_arxiv_month(
        engine, "2026-06", ["cs.LG"], api_url=arxiv.url, page_size=2, delay=0
    )
    assert (again.added, again.updated, again.skipped) == (0, 0, 3)


def test_api_failure_imports_nothing(engine: Engine, arxiv: RecordedArxiv) -> None:
    arxiv.status = 503
    report = import_arxiv_month(engine, "2026-06", ["cs.LG"], api_url=arxiv.url, delay=0)
    assert report.error is not None and "HTTP 503" in str(report.error)
    with Session(engine) as session:
        assert session.exec(select(Paper)).all() == []


def test_arxiv_error_answer_is_reported(engine: Engine) -> None:
    (report,) = import_paths(engine, [DATA / "arxiv_error.xml"])
    assert report.error is not None and report.error.record == 1
    assert "arXiv API error: incorrect id format for 1234.12345" in str(report.error)


def test_cli_fetch_arxiv(settings, monkeypatch: pytest.MonkeyPatch, arxiv: RecordedArxiv) -> None:
    from newsletter.cli import app
    from newsletter.settings import get_settings

    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NEWSLETTER_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        args = ["papers", "fetch-arxiv", "--month", "2026-06", "--category", "cs.LG"]
        ok = runner.invoke(app, [*args, "--delay", "0", "--api-url", arxiv.url])
        assert ok.exit_code == 0, ok.output
        assert "3 added, 0 updated, 0 unchanged" in ok.output
        arxiv.status = 500
        bad = runner.invoke(app, [*args, "--delay", "0", "--api-url", arxiv.url])
        assert bad.exit_code == 1 and "HTTP 500" in bad.output
        assert runner.invoke(app, ["papers", "fetch-arxiv", "--month", "June"]).exit_code == 2
    finally:
        get_settings.cache_clear()
