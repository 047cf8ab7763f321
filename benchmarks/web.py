"""Requests per second of the public web app against a minimal FastAPI endpoint, same run.

Each server is a real uvicorn process (this script started with `--serve`), one worker, on
127.0.0.1; the load client is a small asyncio HTTP/1.1 keep-alive client in this process
(lighter than httpx, so the client is not what is measured). Compared:

- `GET /ping` of a minimal FastAPI app (JSON `{"ok": true}`) — the ceiling;
- `POST /echo` of the same minimal app, parsing a form — the ceiling for a form post;
- `GET /issues/{month}`: the web version of a sent 40-paper issue (database read, page
  rendered once per issue revision and served from memory, security headers);
- `POST /subscribe` with a distinct address each time: validation, a write transaction,
  a signed link, the confirmation email rendered and written to the outbox.

With `--burst`, a sign-up burst instead (issue 25): 50 concurrent clients post `/subscribe`
(a new address each time) for 30 s, on SQLite and on a throwaway PostgreSQL cluster, beside
the minimal app's form POST under the same load; per-request latencies give p50/p99, and
every non-2xx answer (5xx apart) is counted.

Usage: .venv/bin/python benchmarks/web.py [--seconds 2] [--rounds 3] [--connections 16]
       .venv/bin/python benchmarks/web.py --burst [--seconds 30] [--connections 50] [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MONTH = "2026-05"


def serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "minimal":
        app = FastAPI()

        @app.get("/ping")
        def ping() -> dict[str, bool]:
            return {"ok": True}

        @app.post("/echo")
        async def echo(request: Request) -> dict[str, int]:
            form = await request.form()
            return {"fields": len(form)}

    else:
        from newsletter.mail_sender import MailSender
        from newsletter.settings import load_settings
        from newsletter.web.app import create_app
        from newsletter.web.ratelimit import ClientRateLimiter

        sender = MailSender()  # as `newsletter serve` runs it
        sender.start()
        app = create_app(load_settings(), mail_sender=sender)
        app.state.subscribe_limiter = ClientRateLimiter(10**9, 600)  # one client sends all
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # uvicorn re-raises it at exit
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        if kind != "minimal":
            sender.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(var_dir: Path, database_url: str = "") -> dict[str, str]:
    from sqlmodel import Session

    from newsletter.bootstrap import init_database
    from newsletter.db import make_engine
    from newsletter.models import IssueStatus
    from newsletter.testing.sample_issue import build_sample_issue

    env = {
        **os.environ,
        "NEWSLETTER_VAR_DIR": str(var_dir),
        "NEWSLETTER_DATABASE_URL": database_url or f"sqlite:///{var_dir / 'bench.db'}",
        "NEWSLETTER_SECRET_KEY": "benchmark-secret-key",
        "NEWSLETTER_POSTAL_ADDRESS": "1 Bench Street",
        "NEWSLETTER_MAIL_BACKEND": "outbox",
    }
    engine = make_engine(env["NEWSLETTER_DATABASE_URL"])
    init_database(engine)
    with Session(engine) as session:
        issue = build_sample_issue(session, MONTH, papers=40)
        issue.status = IssueStatus.SENT
        session.commit()
    engine.dispose()
    return env


def _start(kind: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port)], env=env, cwd=REPO
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _load(
    port: int, make_request, seconds: float, connections: int
) -> tuple[int, int, float]:
    """Requests completed, non-2xx answers, elapsed seconds (after a short warm-up)."""
    done = errors = 0
    measuring = False
    stop_at = float("inf")

    async def worker() -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                writer.write(make_request(port))
                status = await _read_response(reader)
                if measuring:
                    done += 1
                    errors += not 200 <= status < 300
        finally:
            writer.close()

    stop_at = time.monotonic() + 0.5 + seconds
    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.5)
    measuring, start = True, time.monotonic()
    await asyncio.gather(*tasks)
    return done, errors, time.monotonic() - start


async def _burst(port: int, make_request, seconds: float, connections: int):
    """Per-request latencies (ms) and status counts of `connections` clients for `seconds`
    (after a short warm-up); each client waits for its answer before the next request."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    measuring = False
    stop_at = time.monotonic() + 1.0 + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                sent = time.perf_counter()
                writer.write(make_request(port))
                status = await _read_response(reader)
                if measuring:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(connections)]
    await asyncio.sleep(1.0)
    measuring, start = True, time.monotonic()
    await asyncio.gather(*tasks)
    return latencies, statuses, time.monotonic() - start


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def sign_up_burst(seconds: float, connections: int, postgres: bool) -> int:
    """The sign-up burst of issue 25; exit status 1 on any 5xx."""
    counter = itertools.count()

    def subscribe_fields() -> list[tuple[str, str]]:
        n = next(counter)
        return [("email", f"burst{n}@example.org"), ("topics", "optimization,transformers")]

    def echo_fields() -> list[tuple[str, str]]:
        return [("email", "burst@example.org"), ("topics", "optimization,transformers")]

    rows: list[tuple[str, list[float], dict[int, int], float]] = []
    where: dict[str, tuple[Path, str]] = {}  # case -> (var dir, database URL)
    mail: list[tuple[str, int, int, int, int, float]] = []
    cluster = None
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        try:
            backends = [("SQLite", "")]
            if postgres:
                from newsletter.testing.postgres import start_cluster

                cluster = start_cluster()
                import psycopg

                with psycopg.connect(
                    f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres",
                    autocommit=True,
                ) as conn:
                    conn.execute('CREATE DATABASE "burst"')
                backends.append(("PostgreSQL", cluster.url("burst")))
            minimal, minimal_port = _start("minimal", dict(os.environ))
            try:
                cases = [("POST /echo form (minimal FastAPI)", minimal_port, echo_fields, "/echo")]
                servers = []
                for label, url in backends:
                    var_dir = Path(tmp) / label
                    var_dir.mkdir()
                    proc, port = _start("app", _prepare(var_dir, url))
                    servers.append(proc)
                    cases.append(
                        (f"POST /subscribe, {label}", port, subscribe_fields, "/subscribe")
                    )
                    where[cases[-1][0]] = (var_dir, url or f"sqlite:///{var_dir / 'bench.db'}")
                try:
                    for name, port, fields, path in cases:
                        latencies, statuses, elapsed = asyncio.run(
                            _burst(port, _post_form(path, fields), seconds, connections)
                        )
                        rows.append((name, latencies, statuses, elapsed))
                        if name in where:
                            mail.append((name, *_mail_after_burst(*where[name])))
                finally:
                    for proc in servers:
                        proc.terminate()
                        proc.wait(10)
            finally:
                minimal.terminate()
                minimal.wait(10)
        finally:
            if cluster is not None:
                cluster.stop()
    print(
        f"\nSign-up burst: {connections} concurrent clients for {seconds:.0f} s each, "
        "one uvicorn worker per server\n"
    )
    print(
        f"{'case':<36} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'non-2xx':>8} {'5xx':>5}"
    )
    failed = False
    for name, latencies, statuses, elapsed in rows:
        bad = sum(n for status, n in statuses.items() if not 200 <= status < 300)
        server_errors = sum(n for status, n in statuses.items() if status >= 500)
        failed |= server_errors > 0
        print(
            f"{name:<36} {len(latencies):>9} {len(latencies) / elapsed:>7.0f} "
            f"{_percentile(latencies, 0.5):>8.1f} {_percentile(latencies, 0.99):>8.1f} "
            f"{max(latencies, default=0):>8.1f} {bad:>8} {server_errors:>5}"
        )
    print(
        "\nConfirmation mail after the burst (sent by the mail process from the queue):\n\n"
        f"{'case':<36} {'sign-ups':>9} {'mails':>7} {'twice':>6} {'queued':>7} {'drained':>9}"
    )
    for name, signups, mails, twice, queued, drained in mail:
        failed |= mails != signups or twice > 0 or queued > 0
        print(f"{name:<36} {signups:>9} {mails:>7} {twice:>6} {queued:>7} {drained:>8.1f}s")
    return 1 if failed else 0


def _mail_after_burst(
    var_dir: Path, url: str, timeout: float = 300
) -> tuple[int, int, int, int, float]:
    """Waits for the queue to empty; (sign-ups, confirmations in the outbox, addresses
    mailed twice, rows still queued, seconds after the burst until the queue was empty)."""
    import email
    from collections import Counter

    from sqlalchemy import func, select

    from newsletter.db import make_engine
    from newsletter.models import QueuedMail, Subscriber

    engine = make_engine(url)
    start = time.monotonic()
    try:
        while True:
            with engine.connect() as conn:
                queued = conn.execute(select(func.count()).select_from(QueuedMail)).scalar_one()
                signups = conn.execute(select(func.count()).select_from(Subscriber)).scalar_one()
            if queued == 0 or time.monotonic() - start > timeout:
                break
            time.sleep(0.2)
        drained = time.monotonic() - start
    finally:
        engine.dispose()
    sent = Counter(
        email.message_from_bytes(path.read_bytes())["To"]
        for path in (var_dir / "outbox").glob("*.eml")
    )
    return signups, sum(sent.values()), sum(n - 1 for n in sent.values()), queued, drained


def _get(path: str):
    def build(port: int) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    return build


def _post_form(path: str, fields) -> object:
    def build(port: int) -> bytes:
        body = urlencode(fields()).encode()
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    return build


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="cases interleaved; best kept")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--burst", action="store_true", help="the sign-up burst (issue 25)")
    parser.add_argument("--no-pg", action="store_true", help="burst: SQLite only")
    parser.add_argument("--serve", choices=["minimal", "app"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if args.burst:
        seconds = args.seconds if "--seconds" in sys.argv else 30.0
        connections = args.connections if "--connections" in sys.argv else 50
        return sign_up_burst(seconds, connections, postgres=not args.no_pg)

    counter = itertools.count()

    def subscribe_fields() -> list[tuple[str, str]]:
        n = next(counter)
        return [("email", f"bench{n}@example.org"), ("topics", "optimization")]

    def echo_fields() -> list[tuple[str, str]]:
        return [("email", "bench@example.org"), ("topics", "optimization")]

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        env = _prepare(Path(tmp))
        cases = [
            ("minimal", "GET /ping (minimal FastAPI)", _get("/ping")),
            ("minimal", "POST /echo form (minimal FastAPI)", _post_form("/echo", echo_fields)),
            ("app", f"GET /issues/{MONTH}", _get(f"/issues/{MONTH}")),
            ("app", "POST /subscribe", _post_form("/subscribe", subscribe_fields)),
        ]
        results: dict[str, tuple[float, float, int]] = {}
        servers = {kind: _start(kind, env) for kind in ("minimal", "app")}
        try:
            # Interleaved rounds, best kept: the machine is shared, and a burst of someone
            # else's work should not land on one case only.
            for _ in range(args.rounds):
                for kind, name, request in cases:
                    port = servers[kind][1]
                    done, errors, elapsed = asyncio.run(
                        _load(port, request, args.seconds, args.connections)
                    )
                    rate = done / elapsed
                    latency = elapsed / max(done, 1) * args.connections * 1000
                    best = results.get(name)
                    total_errors = errors + (best[2] if best else 0)
                    if best is None or rate > best[0]:
                        results[name] = (rate, latency, total_errors)
                    else:
                        results[name] = (best[0], best[1], total_errors)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
        outbox = len(list((Path(tmp) / "outbox").glob("*.eml")))

    ceiling = results["GET /ping (minimal FastAPI)"][0]
    form_ceiling = results["POST /echo form (minimal FastAPI)"][0]
    print(
        f"\n{args.connections} keep-alive connections, best of {args.rounds} interleaved "
        f"{args.seconds:.0f} s rounds, one uvicorn worker per server, SQLite\n"
    )
    print(f"{'endpoint':<36} {'req/s':>9} {'mean ms':>9} {'non-2xx':>8} {'vs /ping':>9}")
    for name, (rate, latency, errors) in results.items():
        print(f"{name:<36} {rate:>9.0f} {latency:>9.1f} {errors:>8} {rate / ceiling:>8.2f}x")
    page = results[f"GET /issues/{MONTH}"][0]
    sub = results["POST /subscribe"][0]
    print(
        f"\nGET /issues/{MONTH} runs at {page / ceiling:.2f}x a minimal GET; "
        f"POST /subscribe at {sub / form_ceiling:.2f}x a minimal form POST "
        f"({outbox} confirmation emails written)."
    )
    failed = any(errors for _, _, errors in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
