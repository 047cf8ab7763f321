"""Hardening (issue 12): what a public newsletter meets from attackers, proxies and big
imports. Each test names the attack or the load it stands up to."""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from starlette.testclient import TestClient

from newsletter import audience
from newsletter.db import read_session, session_scope
from newsletter.delivery import send_issue
from newsletter.models import Delivery, Issue, IssuePaper, IssueStatus, Paper, ProviderEvent
from newsletter.rendering.recipients import RECIPIENT_FIELDS, RECIPIENT_MARKERS
from newsletter.settings import SettingsError, load_settings
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.live_server import live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.testing.smtp_sink import SmtpSink
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.sendgrid import SendgridTransport
from newsletter.transports.smtp import SmtpTransport
from newsletter.web.app import create_app
from newsletter.web.ratelimit import ClientRateLimiter
from subscribers.models import Subscriber

KEY = "SG.test-key"


def _vouch(engine, settings, email: str = "reader@example.org") -> Subscriber:
    return audience.add_subscriber(
        engine, settings, email, ["optimization"], confirmed=True
    ).subscriber


# --- 1. reads beside a long write ---------------------------------------------------------


def test_a_read_does_not_wait_for_a_writer(engine) -> None:
    """SQLite: pages read in deferred transactions, beside an open write transaction."""
    done = threading.Event()
    with session_scope(engine) as writer:
        writer.add(Issue(month="2031-01"))
        writer.flush()  # the write lock is held from here to the end of the block

        def read() -> None:
            with read_session(engine) as session:
                session.execute(select(func.count()).select_from(Issue)).scalar_one()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(2), "a read waited for the writer"


def _big_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "topics", "name"])
        for i in range(rows):
            out.writerow(
                [f"bulk{i:06d}@example.org", "optimization;learning-theory" if i % 2 else "", ""]
            )


def test_site_answers_within_a_second_during_a_large_import(
    engine, settings, cli_env, tmp_path
) -> None:
    """A real server beside a real `subscribers import` of 15,000 rows in another process."""
    with Session(engine) as session:
        issue = build_sample_issue(session, "2026-04", papers=6)
        issue.status = IssueStatus.SENT
        session.commit()
    unsubscribe = audience.links_for(settings, _vouch(engine, settings)).unsubscribe
    path = unsubscribe.split("/", 3)[3]
    csv_path = tmp_path / "big.csv"
    _big_csv(csv_path, 15_000)
    timings: list[tuple[str, float, int]] = []
    with live_server(create_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as web:
        web.get("/issues/2026-04")  # the first render compiles MJML: not what is measured
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "subscribers", "import", str(csv_path)]
            + ["--confirmed"],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                with read_session(engine) as session:
                    count = session.execute(select(func.count()).select_from(Subscriber)).scalar()
                if count and count > 1:
                    break  # writing has begun
                time.sleep(0.05)
            while proc.poll() is None:
                for method, url in (
                    ("POST", f"/{path}"),
                    ("GET", "/"),
                    ("GET", "/issues/2026-04"),
                    ("GET", "/issues"),
                ):
                    start = time.monotonic()
                    answer = web.request(
                        method,
                        url,
                        data={"List-Unsubscribe": "One-Click"} if method == "POST" else None,
                    )
                    timings.append((url, time.monotonic() - start, answer.status_code))
        finally:
            out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Imported 15000" in out
    assert len(timings) >= 8, f"the import ended before the site was measured: {timings}"
    assert all(code == 200 for _, _, code in timings), timings
    slow = [(url, round(t, 2)) for url, t, _ in timings if t >= 1.0]
    assert not slow, slow


def test_import_checks_every_row_before_writing(engine, settings) -> None:
    """Written in several transactions, yet a bad last row still imports nothing."""
    from subscribers.csv_io import CHUNK_ROWS

    many = 2 * CHUNK_ROWS + 1
    good = "".join(f"ok{i}@example.org,,\n" for i in range(many))
    text = "email,topics,name\n" + good + "not-an-address,,\n"
    with pytest.raises(Exception, match=f"row {many + 2}, column 'email'"):
        audience.import_subscribers(engine, settings, text, confirmed=True)
    with read_session(engine) as session:
        assert session.execute(select(func.count()).select_from(Subscriber)).scalar() == 0
    report = audience.import_subscribers(
        engine, settings, "email,topics,name\n" + good, confirmed=True
    )
    assert report.imported == many


# --- 2. paper text cannot produce a per-recipient marker -------------------------------------


def _booby_trapped_issue(engine, month: str) -> None:
    plain = [f"__NL_{name.upper()}__" for name in RECIPIENT_FIELDS]
    live = list(RECIPIENT_MARKERS.values())  # this very process's markers
    every = plain + live
    with Session(engine) as session:
        issue = build_sample_issue(session, month, papers=3)
        paper_id = session.exec(
            select(IssuePaper.paper_id).where(IssuePaper.issue_id == issue.id).limit(1)
        ).first()[0]
        paper = session.get(Paper, paper_id)
        paper.title = "Steal " + " ".join(every)
        paper.summary = "Summary " + " ".join(every)
        paper.authors = every
        query = "&".join(f"p{i}={m}" for i, m in enumerate(every))
        paper.url = f"https://attacker.example/t?{query}"
        session.commit()


def _bodies(backend: str, sink, fake, outbox: Path) -> list[str]:
    """Every body as the recipient's mail client finally sees it."""
    if backend == "sendgrid":
        texts = []
        for body in fake.state.bodies:
            for person in body["personalizations"]:
                for part in body["content"]:
                    value = part["value"]
                    for key, sub in person.get("substitutions", {}).items():
                        value = value.replace(key, sub)  # what SendGrid does
                    texts.append(value)
        return texts
    raw = (
        [m.data for m in sink.messages]
        if backend == "smtp"
        else [p.read_bytes() for p in outbox.glob("*.eml")]
    )
    texts = []
    for data in raw:
        msg = message_from_bytes(data, policy=policy.default)
        texts += [part.get_content() for part in msg.walk() if not part.is_multipart()]
    return texts


@pytest.mark.parametrize("backend", ["outbox", "smtp", "sendgrid"])
def test_paper_text_never_becomes_a_recipient_field(engine, settings, tmp_path, backend) -> None:
    _booby_trapped_issue(engine, "2026-04")
    sub = _vouch(engine, settings, "victim@example.org")
    with SmtpSink() as sink, FakeSendgrid(KEY) as fake:
        transport = {
            "outbox": lambda: OutboxTransport(tmp_path / "outbox"),
            "smtp": lambda: SmtpTransport(sink.url),
            "sendgrid": lambda: SendgridTransport(KEY, fake.url),
        }[backend]()
        report = send_issue(engine, settings, "2026-04", transport=transport)
        assert report.run.sent == 1
        bodies = _bodies(backend, sink, fake, tmp_path / "outbox")
    assert len(bodies) == 2  # text and HTML
    for body in bodies:
        for name in RECIPIENT_FIELDS:
            assert f"__NL_{name.upper()}__" in body, (name, body[:300])
        for marker in RECIPIENT_MARKERS.values():
            assert marker not in body
        trap = body[body.index("attacker.example") :].split()[0]
        assert "victim" not in trap and sub.public_id not in trap and "/unsubscribe/" not in trap
    assert all(f"{settings.base_url}/unsubscribe/" in body for body in bodies)  # the real one


# --- 3. request bodies ------------------------------------------------------------------------


def test_bodies_over_the_cap_answer_413(settings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"max_body_bytes": 4096})))
    big = {"email": "a@example.org", "website": "x" * 10_000}
    assert client.post("/subscribe", data=big).status_code == 413
    streamed = client.post(
        "/subscribe",
        content=(b"email=a%40example.org&x=" + b"y" * 1000 for _ in range(10)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert client.post("/subscribe", data={"email": "a@example.org"}).status_code == 200


def _raw_request(base: str, head: str, timeout: float = 3.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode())  # the headers only: the body never comes
        try:
            return sock.recv(200)
        except TimeoutError:
            return b"(no answer: the server waits for the body)"


def test_webhook_refuses_before_reading_the_body(settings) -> None:
    app = create_app(settings.model_copy(update={"sendgrid_webhook_key": "c29tZS1rZXk="}))
    with live_server(app) as base:
        head = "POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "Content-Type: application/json\r\n"
        unsigned = _raw_request(base, head + "Content-Length: 1000000\r\n\r\n")
        assert unsigned.startswith(b"HTTP/1.1 403"), unsigned
        huge = _raw_request(base, head + "Content-Length: 400000000\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 413"), huge


# --- 4. local outbox and Host header ----------------------------------------------------------


def test_outbox_only_on_a_loopback_bind(settings) -> None:
    everywhere = TestClient(create_app(settings, bind_host="0.0.0.0"))
    assert everywhere.get("/outbox").status_code == 404
    assert TestClient(create_app(settings)).get("/outbox").status_code == 404  # bind unknown
    local = TestClient(create_app(settings, bind_host="127.0.0.1"))
    assert local.get("/outbox").status_code == 200


def test_host_header_must_name_this_site(settings, tmp_path, db_url) -> None:
    local = TestClient(create_app(settings))
    for host in ("127.0.0.1:8000", "localhost:8000", "testserver"):
        assert local.get("/", headers={"Host": host}).status_code == 200, host
    rebound = local.get("/", headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 400
    public = load_settings(
        var_dir=tmp_path / "pub",
        database_url=db_url,
        base_url="https://news.example.org",
        secret_key="s" * 32,
        allowed_hosts="www.example.org",
        _env_file=None,
    )
    site = TestClient(create_app(public), base_url="https://news.example.org")
    assert site.get("/").status_code == 200
    assert site.get("/", headers={"Host": "www.example.org"}).status_code == 200
    assert site.get("/", headers={"Host": "127.0.0.1"}).status_code == 400
    assert site.post("/subscribe", headers={"Host": "evil.example"}).status_code == 400
    assert site.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200


# --- 5. behind a proxy ------------------------------------------------------------------------


def _subscribe_from(web: httpx.Client, client_ip: str) -> int:
    data = {"email": f"x{time.monotonic_ns()}@example.org"}
    return web.post("/subscribe", data=data, headers={"X-Forwarded-For": client_ip}).status_code


def test_rate_limit_and_consent_see_the_visitor_behind_a_trusted_proxy(engine, settings) -> None:
    app = create_app(settings)  # trusts loopback, where this test's "router" connects from
    app.state.subscribe_limiter = ClientRateLimiter(1, 600)
    with live_server(app) as base, httpx.Client(base_url=base) as web:
        assert _subscribe_from(web, "203.0.113.1") == 200
        assert _subscribe_from(web, "203.0.113.1") == 429
        assert _subscribe_from(web, "203.0.113.2") == 200  # another visitor is not blocked
    with read_session(engine) as session:
        from subscribers.models import ConsentRecord

        seen = set(session.exec(select(ConsentRecord.client_address)).scalars())
    assert seen == {"203.0.113.1", "203.0.113.2"}
    untrusted = create_app(settings.model_copy(update={"trusted_proxies": "10.9.9.9"}))
    untrusted.state.subscribe_limiter = ClientRateLimiter(1, 600)
    with live_server(untrusted) as base, httpx.Client(base_url=base) as web:
        assert _subscribe_from(web, "203.0.113.3") == 200
        assert _subscribe_from(web, "203.0.113.4") == 429  # a forged header changes nothing


def test_rate_limiter_is_constant_time_per_hit() -> None:
    limiter = ClientRateLimiter(10, 600)
    for i in range(15_000):
        limiter.hit(f"198.51.{i // 256}.{i % 256}", now=1.0)
    start = time.perf_counter()
    for i in range(2_000):
        limiter.hit(f"203.0.{i // 256}.{i % 256}", now=2.0)
    assert time.perf_counter() - start < 0.5
    for _ in range(10):
        limiter.hit("198.51.0.0", now=3.0)
    assert limiter.hit("198.51.0.0", now=3.0) > 0  # still limits
    assert limiter.hit("198.51.0.0", now=700.0) == 0  # and forgets after the window


# --- 6. GDPR export and erase -----------------------------------------------------------------


def test_export_and_erase_cover_deliveries_and_provider_events(
    engine, settings, cli, tmp_path
) -> None:
    from newsletter.delivery.feedback import record_sendgrid_events
    from subscribers.models import SuppressedAddress

    sub = _vouch(engine, settings, "bounced@example.org")
    with Session(engine) as session:
        issue = build_sample_issue(session, "2026-04", papers=2)
        delivery = Delivery(issue_id=issue.id, subscriber_id=sub.id, status="sent")
        session.add(delivery)
        session.commit()
        event = {
            "sg_event_id": "ev1",
            "event": "bounce",
            "type": "bounce",
            "reason": "550",
            "email": "bounced@example.org",
            "delivery_id": str(delivery.id),
        }
        record_sendgrid_events(session, [event])
    exported = cli("subscribers", "export", "--email", "bounced@example.org")
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    assert [d["issue"] for d in data["deliveries"]] == ["2026-04"]
    assert [e["event"] for e in data["provider_events"]] == ["bounce"]
    assert data["status"] == "suppressed"

    assert cli("subscribers", "remove", "bounced@example.org").exit_code == 0
    with read_session(engine) as session:
        assert session.exec(select(Delivery)).all() == []
        assert session.exec(select(ProviderEvent)).all() == []
        kept = session.exec(select(SuppressedAddress)).scalars().all()
        assert len(kept) == 1 and "bounced" not in kept[0].address_hash
    again = cli("subscribers", "add", "Bounced@example.org", "--confirmed")
    assert again.exit_code == 1 and "suppressed" in again.output
    csv_file = tmp_path / "back.csv"
    csv_file.write_text("email\nfriend@example.org\nbounced@example.org\n")
    imported = cli("subscribers", "import", str(csv_file), "--confirmed")
    assert imported.exit_code == 1 and "row 3" in imported.output
    with read_session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []  # nothing of that file
    # Without --confirmed the file imports, the suppressed address is skipped and said so.
    opt_in = cli("subscribers", "import", str(csv_file))
    assert opt_in.exit_code == 0, opt_in.output
    said = " ".join(opt_in.output.split())  # Rich wraps long lines
    assert "Imported 1 subscriber(s)" in said and "1 confirmation email(s) sent" in said
    assert "Skipped 1 suppressed address(es)" in said
    with read_session(engine) as session:
        emails = session.exec(select(Subscriber.email)).scalars().all()
        assert emails == ["friend@example.org"]
    # The person may still come back through double opt-in.
    result = audience.request_subscription(engine, settings, "bounced@example.org", [])
    assert result.send_confirmation and result.subscriber.status == "pending"


# --- 7. smaller -------------------------------------------------------------------------------


def test_csv_export_cells_never_run_as_formulas(engine, settings) -> None:
    import io

    from subscribers import csv_io

    audience.add_subscriber(
        engine, settings, "+1@example.org", [], confirmed=True, name='=HYPERLINK("http://x")'
    )
    audience.add_subscriber(engine, settings, "-2@example.org", [], confirmed=True, name="@SUM")
    out = io.StringIO()
    with read_session(engine) as session:
        csv_io.write_export(session, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))[1:]
    assert {(r[0], r[2]) for r in rows} == {
        ("'+1@example.org", '\'=HYPERLINK("http://x")'),
        ("'-2@example.org", "'@SUM"),
    }
    back = csv_io.parse_import(out.getvalue(), set())
    assert {(r.email, r.name) for r in back} == {
        ("+1@example.org", '=HYPERLINK("http://x")'),
        ("-2@example.org", "@SUM"),
    }


def test_admin_token_never_reaches_the_access_log(settings) -> None:
    token = "an-editor-token-that-must-stay-secret-0123456789"
    app = create_app(settings.model_copy(update={"admin_token": token}))
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    with live_server(app, access_log=True, log_level="info") as base:
        handler = Keep()
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            httpx.get(f"{base}/issues/2026-04/preview?topics=x&token={token}")
            httpx.get(f"{base}/issues/2026-04/preview?token={token}")
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    assert len(records) == 2
    assert all(token not in line and "token=[redacted]" in line for line in records), records


def test_generated_secret_key_is_private_from_the_start(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    elsewhere = tmp_path / "readable-by-all"
    elsewhere.write_text("")
    (var / "secret_key.tmp").symlink_to(elsewhere)  # planted by another local user
    key = load_settings(var_dir=var, _env_file=None).secret
    assert len(key) >= 32 and elsewhere.read_text() == ""
    assert stat.S_IMODE(os.stat(var / "secret_key").st_mode) == 0o600
    assert load_settings(var_dir=var, _env_file=None).secret == key


def test_short_secrets_are_refused_on_a_public_site(tmp_path) -> None:
    public = {"var_dir": tmp_path, "base_url": "https://news.example.org", "_env_file": None}
    with pytest.raises(SettingsError, match="NEWSLETTER_SECRET_KEY: needs at least 32"):
        load_settings(secret_key="x", **public)
    with pytest.raises(SettingsError, match="NEWSLETTER_ADMIN_TOKEN: needs at least 32"):
        load_settings(secret_key="s" * 32, admin_token="editor", **public)
    load_settings(secret_key="s" * 32, admin_token="e" * 32, **public)
    load_settings(var_dir=tmp_path, secret_key="x", admin_token="e", _env_file=None)  # local


def test_a_deeply_nested_paper_file_fails_alone(cli, tmp_path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"papers": ' + "[" * 100_000 + "]" * 100_000 + "}")
    good = tmp_path / "good.json"
    paper = {
        "title": "A fine paper on optimisation",
        "summary": "It is fine.",
        "url": "https://arxiv.org/abs/2604.00001",
        "published": "2026-04",
    }
    good.write_text(json.dumps([paper]))
    result = cli("papers", "import", str(deep), str(good))
    assert result.exit_code == 1
    assert "deep.json: is nested too deeply" in result.output
    assert "good.json (json): 1 added" in result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_links_carry_a_random_public_id(engine, settings) -> None:
    from itsdangerous import base64_decode

    first, second = (_vouch(engine, settings, f"p{i}@example.org") for i in range(2))
    for sub in (first, second):
        token = audience.links_for(settings, sub).unsubscribe.rsplit("/", 1)[1]
        payload = json.loads(base64_decode(token.split(".")[0]))
        assert payload[0] == sub.public_id and isinstance(payload[0], str)  # not the row id
        assert len(sub.public_id) >= 16


def test_links_sent_before_public_ids_still_unsubscribe(engine, settings) -> None:
    from itsdangerous import URLSafeTimedSerializer

    sub = _vouch(engine, settings, "early@example.org")
    old = URLSafeTimedSerializer(settings.secret, salt="newsletter.unsubscribe").dumps(
        [sub.id, sub.token_version]
    )
    client = TestClient(create_app(settings))
    assert client.post(f"/unsubscribe/{old}").status_code == 200
    with read_session(engine) as session:
        assert session.get(Subscriber, sub.id).status == "unsubscribed"
