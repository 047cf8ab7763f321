"""Hardening, second round (issue 25): what a red team still found against live servers, the
CLI and the mailbox. Each test names the finding (review 2026-12, probe number) it repeats."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter import audience
from newsletter.db import read_session, session_scope
from newsletter.desk import people
from newsletter.errors import NewsletterError
from newsletter.models import Paper
from newsletter.settings import load_settings
from newsletter.testing.live_server import live_server
from newsletter.web.app import create_app
from newsletter.web.ratelimit import ClientRateLimiter
from subscribers import csv_io, lifecycle
from subscribers.models import Subscriber

EDITOR = "editor@example.org"
TOKEN = "admin-token-0123456789abcdef-0123456789"
KNOWN = ["optimization", "learning-theory", "transformers"]


def desk_settings(settings, **changes):
    values = {
        "var_dir": settings.var_dir,
        "database_url": settings.database_url,
        "secret_key": settings.secret_key,
        "postal_address": settings.postal_address,
        "editors": EDITOR,
        "admin_token": TOKEN,
        "_env_file": None,
    }
    values.update(changes)
    return load_settings(**values)


def _vouch(engine, settings, email: str = "reader@example.org"):
    return audience.add_subscriber(engine, settings, email, ["optimization"], confirmed=True)


def web_app(settings):
    app = create_app(settings)
    app.state.subscribe_limiter = ClientRateLimiter(1000, 600)
    return app


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def desk_sign_in(web: httpx.Client) -> str:
    resp = web.post("/admin/sign-in/token", data={"token": TOKEN})
    assert resp.status_code == 303, resp.text
    return csrf_of(web.get("/admin/issues").text)


def _timed(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start


# --- 8.1: topic input is capped and linear everywhere -------------------------------------

FLOOD = ",".join(f"t{i}" for i in range(50_000))  # 50,000 unique slugs, 0.34 MB


def _form(**fields: str) -> dict[str, object]:
    """Request arguments of an encoded form (encoded here, so only the server is timed)."""
    return {
        "content": urlencode(fields).encode(),
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }


def test_subscribe_and_preferences_refuse_a_topic_flood_at_once(settings, engine) -> None:
    many = ",".join([KNOWN[i % 3] for i in range(lifecycle.MAX_TOPICS)])
    some = ",".join(f"t{i}" for i in range(2_000))  # 11 KB: under the form's byte cap
    with live_server(web_app(settings)) as base, httpx.Client(base_url=base) as web:
        ok = web.post("/subscribe", data={"email": "many@example.org", "topics": many})
        assert ok.status_code == 200 and "inbox" in ok.text.lower()
        web.post("/subscribe", data={"email": "warm@example.org", "topics": "x"})  # warm up
        for flood, needle in ((FLOOD, "form not understood"), (some, "too many topics")):
            form = _form(email="flood@example.org", topics=flood)
            resp, took = _timed(web.post, "/subscribe", **form)
            assert resp.status_code == 400 and needle in resp.text.lower(), resp.text[-1500:]
            assert took < 0.05, took
        sub = audience.add_subscriber(
            engine, settings, "reader@example.org", ["optimization"], confirmed=True
        ).subscriber
        prefs = audience.links_for(settings, sub, absolute=False).preferences
        for flood, needle in ((FLOOD, "form not understood"), (some, "too many topics")):
            form = _form(action="save", topics=flood)
            resp, took = _timed(web.post, prefs, **form)
            assert resp.status_code == 400 and needle in resp.text.lower(), resp.text[-1500:]
            assert took < 0.05, took
        resp = web.post(prefs, data={"action": "save", "topics": many})
        assert resp.status_code == 200
    with read_session(engine) as session:
        assert lifecycle.get_by_email(session, "flood@example.org") is None
        for address in ("many@example.org", "reader@example.org"):
            stored = lifecycle.topics_of(session, lifecycle.get_by_email(session, address))
            assert stored == sorted(KNOWN)


def test_desk_and_csv_import_refuse_a_topic_flood_at_once(settings, engine) -> None:
    sub = audience.add_subscriber(
        engine, settings, "reader@example.org", ["optimization"], confirmed=True
    ).subscriber
    flood = FLOOD.split(",")
    with session_scope(engine) as session:
        start = time.perf_counter()
        with pytest.raises(NewsletterError, match="too many topics"):
            people.change_topics(session, sub.id, flood, EDITOR)
        assert time.perf_counter() - start < 0.05
    text = f"email,topics\nflood@example.org,{';'.join(flood[:15_000])}\n"  # under csv's cell cap
    start = time.perf_counter()
    with pytest.raises(csv_io.CsvImportError, match="row 2, column 'topics': too many topics"):
        csv_io.parse_import(text, set(KNOWN))
    assert time.perf_counter() - start < 0.05
    desk = desk_settings(settings)
    with live_server(web_app(desk)) as base, httpx.Client(base_url=base) as web:
        csrf = desk_sign_in(web)
        path = f"/admin/subscribers/{sub.id}/topics"
        for count in (90, 90, 50_000):  # the first one warms the page up
            form = {
                "content": urlencode(
                    [("csrf_token", csrf)] + [("topics", t) for t in flood[:count]]
                ).encode(),
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            }
            resp, took = _timed(web.post, path, **form)
            assert resp.status_code == 400, resp.text
            assert count > 90 or "too many topics" in resp.text.lower(), resp.text
        assert took < 0.05, took
    with read_session(engine) as session:
        assert lifecycle.topics_of(session, lifecycle.get_by_email(session, sub.email)) == [
            "optimization"
        ]


# --- 2.8, 2.9: a YAML alias bomb is refused before it is built ----------------------------


def billion_laughs(field: str) -> str:
    """Nine levels of nine aliases (387 million values), the review's file; one paper whose
    `field` is the last alias."""
    lines = ["lol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    paper = {
        "title": "A paper",
        "summary": "S",
        "url": "https://x.org/1",
        "published": "2026-05",
        "authors": "A. Author",
        "topics": "optimization",
    }
    paper[field] = "*i"
    lines.append("papers:")
    lines.append("  - {" + ", ".join(f"{k}: {v}" for k, v in paper.items()) + "}")
    return "\n".join(lines) + "\n"


def _peak_growth(call):  # type: ignore[no-untyped-def]
    """(result, seconds, peak bytes allocated meanwhile, in every thread)."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = call()
        took = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, took, peak


@pytest.mark.parametrize("field", ["published", "authors", "topics"])
def test_papers_import_refuses_an_alias_bomb(cli, tmp_path, field) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs(field))
    result, took, peak = _peak_growth(lambda: cli("papers", "import", str(bomb)))
    assert result.exit_code == 1, result.output
    assert "bomb.yaml: has aliases" in result.output and "write the values out" in result.output
    assert "Traceback" not in result.output
    assert took < 1.0 and peak < 50 * 2**20, (took, peak)


def test_desk_upload_of_an_alias_bomb_is_a_400_with_the_reason(settings, engine) -> None:
    desk = desk_settings(settings)
    with live_server(web_app(desk)) as base, httpx.Client(base_url=base, timeout=30) as web:
        csrf = desk_sign_in(web)
        resp, took, peak = _peak_growth(
            lambda: web.post(
                "/admin/papers/import",
                data={"format": "auto", "csrf_token": csrf},
                files={"file": ("bomb.yaml", billion_laughs("published").encode(), "text/yaml")},
            )
        )
    assert resp.status_code == 400 and "has aliases" in resp.text, resp.text[-2000:]
    assert took < 1.0 and peak < 50 * 2**20, (took, peak)
    with read_session(engine) as session:
        assert session.exec(select(Paper)).all() == []


def test_sources_file_refuses_an_alias_bomb(tmp_path) -> None:
    from newsletter.papers.sources_file import SourcesFileError, load_sources_file

    path = tmp_path / "sources.yaml"
    path.write_text(billion_laughs("published").replace("papers:", "sources:"))
    start = time.perf_counter()
    with pytest.raises(SourcesFileError, match="has aliases .* that stand for more than 10,000"):
        load_sources_file(path)
    assert time.perf_counter() - start < 1.0


def test_anchors_within_the_bound_still_load(cli, tmp_path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        "authors: &who [A. Author, B. Author]\n"
        "papers:\n"
        "  - {title: One, summary: S, url: 'https://x.org/1', published: 2026-05, authors: *who}\n"
        "  - {title: Two, summary: S, url: 'https://x.org/2', published: 2026-05, authors: *who}\n"
    )
    result = cli("papers", "import", str(ok))
    assert result.exit_code == 0 and "2 added" in result.output, result.output


def test_error_messages_never_carry_an_unbounded_value(cli, tmp_path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(
        "- {title: T, summary: S, url: 'https://x.org/1', published: '" + "9" * 100_000 + "'}\n"
    )
    result = cli("papers", "import", str(big))
    assert result.exit_code == 1 and "field 'published'" in result.output
    assert len(result.output) < 1000, len(result.output)


# --- 8.2, 8.3: no secret in the access log -------------------------------------------------


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_sign_in_link_and_subscriber_tokens_never_reach_the_access_log(settings, engine) -> None:
    from newsletter.desk import auth

    desk = desk_settings(settings)
    with session_scope(engine) as session:
        secret = auth.create_sign_in_link(session, desk, EDITOR)
    sub = audience.add_subscriber(
        engine, settings, "reader@example.org", ["optimization"], confirmed=True
    ).subscriber
    links = audience.links_for(settings, sub, absolute=False)
    secrets = [secret] + [link.rsplit("/", 1)[1] for link in links.__dict__.values()]
    keep = _Keep()
    access = logging.getLogger("uvicorn.access")
    with live_server(web_app(desk), access_log=True, log_level="info") as base:
        access.addHandler(keep)
        try:
            with httpx.Client(base_url=base) as web:
                assert web.get(f"/admin/sign-in/{secret}?next=/admin/issues").status_code == 200
                for link in (links.confirm, links.preferences, links.unsubscribe):
                    assert web.get(link).status_code in (200, 400)
                web.post(links.unsubscribe)
                web.post(links.unsubscribe.replace("/unsubscribe/", "/resubscribe/"))
                web.post("/admin/sign-in/token", data={"token": "wrong"})
        finally:
            access.removeHandler(keep)
        lines = keep.lines
        assert len(lines) == 7, lines
        assert not [line for line in lines if any(s in line for s in secrets)], lines
        assert any("/admin/sign-in/[redacted]?next=" in line for line in lines)
        assert any("/admin/sign-in/token" in line for line in lines)  # the form, no secret
        assert sum("/[redacted]" in line for line in lines) == 6
        with httpx.Client(base_url=base) as web:  # what a log reader could replay: nothing
            replay = web.post("/admin/sign-in/[redacted]", follow_redirects=False)
            assert replay.status_code != 303 and "set-cookie" not in replay.headers


# --- 7.1-7.3: erase means gone from disk -----------------------------------------------------


def _database_files(engine) -> list[Path]:
    """The files the database keeps rows in: SQLite's main file and `-wal`; PostgreSQL's
    files of this database (tables, indexes, its catalogs), after a checkpoint."""
    if engine.dialect.name == "sqlite":
        main = Path(engine.url.database)
        return [p for p in (main, Path(f"{main}-wal")) if p.exists()]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CHECKPOINT")
        data_dir = conn.exec_driver_sql("SHOW data_directory").scalar()
        oid = conn.exec_driver_sql(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).scalar()
    return [p for p in (Path(data_dir) / "base" / str(oid)).iterdir() if p.is_file()]


def _hits(paths: list[Path], needle: str) -> list[str]:
    return [p.name for p in paths if needle.encode() in p.read_bytes()]


@pytest.mark.parametrize("path", ["cli", "desk"])
def test_erase_leaves_no_byte_of_the_address_on_disk(settings, engine, cli, path) -> None:
    gone, kept = "erase-me@example.org", "keep-me@example.org"
    desk = desk_settings(settings)
    with live_server(web_app(desk)) as base, httpx.Client(base_url=base) as web:
        for address in (gone, kept):  # a confirmation and a welcome mail each, in the outbox
            assert web.post("/subscribe", data={"email": address}).status_code == 200
            time.sleep(0.2)  # the confirmation goes out after the answer
            with read_session(engine) as session:
                sub = lifecycle.get_by_email(session, address)
            confirm = audience.links_for(settings, sub, absolute=False).confirm
            assert web.post(confirm).status_code == 200
        outbox = Path(settings.outbox_dir)
        assert len(_hits(list(outbox.glob("*.eml")), gone)) == 2
        assert _hits(_database_files(engine), gone)  # without the scrub it would stay
        if path == "cli":
            assert cli("subscribers", "remove", gone).exit_code == 0
        else:
            csrf = desk_sign_in(web)
            resp = web.post(
                f"/admin/subscribers/{_id_of(engine, gone)}/erase",
                data={"confirm_email": gone, "csrf_token": csrf},
            )
            assert resp.status_code == 303, resp.text
    with read_session(engine) as session:
        assert lifecycle.get_by_email(session, gone) is None
    files = _database_files(engine)
    assert _hits(files, gone) == []
    assert _hits(files, kept)  # the grep does find a present address
    assert _hits(list(outbox.glob("*.eml")), gone) == []
    assert len(_hits(list(outbox.glob("*.eml")), kept)) == 2


def _id_of(engine, address: str) -> int:
    with read_session(engine) as session:
        return lifecycle.get_by_email(session, address).id


# --- 3.9, 3.10: one welcome and one consent record per confirmation, under concurrency ------


def test_simultaneous_confirmations_send_one_welcome(settings, engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from subscribers.models import ConsentRecord

    people_ = [f"racer{i}@example.org" for i in range(6)]
    for address in people_:
        audience.record_subscription(engine, settings, address, ["optimization"])
    with read_session(engine) as session:
        subs = [lifecycle.get_by_email(session, a) for a in people_]
    outbox = Path(settings.outbox_dir)
    with live_server(web_app(settings)) as base:
        for sub in subs:
            confirm = audience.links_for(settings, sub, absolute=False).confirm
            with ThreadPoolExecutor(8) as pool:
                codes = list(
                    pool.map(lambda url: httpx.post(url).status_code, [base + confirm] * 8)
                )
            assert codes == [200] * 8
    with read_session(engine) as session:
        for sub in subs:
            actions = session.exec(
                select(ConsentRecord.action).where(ConsentRecord.subscriber_id == sub.id)
            ).all()
            assert sorted(actions) == ["confirm", "subscribe"], (sub.email, actions)
    for address in people_:  # the welcome mail, exactly once each (no confirmation was sent)
        assert len(_hits(list(outbox.glob("*.eml")), address)) == 1, address


# --- 3.5: a confirmation mailed before an unsubscribe stops working -------------------------


def test_old_confirm_link_does_not_reactivate_after_unsubscribe(settings, engine) -> None:
    audience.record_subscription(engine, settings, "moved@example.org", ["optimization"])
    with read_session(engine) as session:
        sub = lifecycle.get_by_email(session, "moved@example.org")
    old = audience.links_for(settings, sub, absolute=False)
    with live_server(web_app(settings)) as base, httpx.Client(base_url=base) as web:
        assert web.post(old.confirm).status_code == 200
        assert web.post(old.unsubscribe).status_code == 200
        assert web.post("/subscribe", data={"email": "moved@example.org"}).status_code == 200
        replay = web.post(old.confirm)
        assert replay.status_code == 400 and "no longer valid" in replay.text
        with read_session(engine) as session:
            again = lifecycle.get_by_email(session, "moved@example.org")
            assert again.status == "pending"
        fresh = audience.links_for(settings, again, absolute=False).confirm
        assert web.post(fresh).status_code == 200  # the new mail's link does work
    with read_session(engine) as session:
        assert lifecycle.get_by_email(session, "moved@example.org").status == "active"


# --- 3.7: look-alike addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelled", "outcome"),
    [
        ("\uff41\uff4c\uff49\uff43\uff45@example.com", "alice@example.com"),  # fullwidth: NFKC
        ("alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "alice@example.com"),
        ("\u0430lice@example.com", "mixes look-alike letters of different scripts"),  # Cyrillic а
        ("alice@ex\u0430mple.com", "the domain mixes look-alike letters"),
        ("p\u0430ypal@example.com", "(Cyrillic and Latin)"),
        ("alic\u0065\u0301@example.com", "alic\u00e9@example.com"),  # combined: one letter, é
        ("\u0438\u0432\u0430\u043d@example.com", "\u0438\u0432\u0430\u043d@example.com"),
    ],
)
def test_homoglyph_addresses_are_one_person_or_refused(settings, engine, spelled, outcome) -> None:
    with live_server(web_app(settings)) as base, httpx.Client(base_url=base) as web:
        assert web.post("/subscribe", data={"email": "alice@example.com"}).status_code == 200
        resp = web.post("/subscribe", data={"email": spelled})
    with read_session(engine) as session:
        emails = sorted(session.exec(select(Subscriber.email)).all())
    if "@" in outcome:
        assert resp.status_code == 200
        assert emails == sorted({"alice@example.com", outcome})
    else:
        assert resp.status_code == 400 and outcome in resp.text, resp.text[-1500:]
        assert emails == ["alice@example.com"]


# --- 2.6: CR/LF in a name, on every path -----------------------------------------------------


def test_line_breaks_in_names_are_refused_on_every_path(settings, engine, cli, tmp_path) -> None:
    bad = "Eve\r\nBcc: victim@example.org"
    added = cli("subscribers", "add", "eve@example.org", "--confirmed", "--name", bad)
    assert added.exit_code == 1 and "a name cannot contain line breaks" in added.output
    plain = cli("subscribers", "add", "eve@example.org", "--name", "Eve\u2028Two")
    assert plain.exit_code == 1 and "line breaks" in plain.output
    with session_scope(engine) as session, pytest.raises(lifecycle.SubscriberError):
        lifecycle.add_confirmed(
            session,
            "eve@example.org",
            [],
            known_topics=set(KNOWN),
            consent_text_version="v",
            source="test",
            name="Eve\nX",
        )
    sheet = tmp_path / "people.csv"
    sheet.write_text('email,topics,name\neve@example.org,,"Eve\nX"\n')
    assert cli("subscribers", "import", str(sheet), "--confirmed").exit_code == 1
    with read_session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []
    assert cli("subscribers", "add", "eve@example.org", "--name", "Eve Example").exit_code == 0


# --- 6.2, 6.3: re-running an import killed halfway ---------------------------------------------


def _run_import(cli_env, sheet: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "subscribers", "import", str(sheet), *extra],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen, ready) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, "the import finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _people_csv(path: Path, count: int) -> list[str]:
    addresses = [f"reader{i:05d}@example.org" for i in range(count)]
    path.write_text("email,topics\n" + "".join(f"{a},optimization\n" for a in addresses))
    return addresses


def test_rerun_of_a_killed_vouched_import_records_consent_once(engine, cli_env, tmp_path) -> None:
    from subscribers.models import ConsentRecord

    sheet = tmp_path / "people.csv"
    addresses = _people_csv(sheet, 10_000)

    def some_written() -> bool:
        with read_session(engine) as session:
            return session.exec(select(func.count()).select_from(Subscriber)).one() >= 2_000

    first = _run_import(cli_env, sheet, "--confirmed")
    _kill_when(first, some_written)
    with read_session(engine) as session:
        written = session.exec(select(func.count()).select_from(Subscriber)).one()
    assert 2_000 <= written < 10_000
    rerun = _run_import(cli_env, sheet, "--confirmed")
    assert rerun.wait(300) == 0, rerun.stderr.read()
    with read_session(engine) as session:
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == len(addresses)
        per_person = session.exec(
            select(ConsentRecord.subscriber_id, func.count())
            .where(ConsentRecord.action == "vouched")
            .group_by(ConsentRecord.subscriber_id)
        ).all()
    assert len(per_person) == len(addresses) and {n for _, n in per_person} == {1}


def test_rerun_of_a_killed_double_opt_in_import_mails_nobody_twice(
    settings, engine, cli_env, tmp_path
) -> None:
    from collections import Counter

    from newsletter.audience import CONFIRMATION_CLAIM_BATCH

    sheet = tmp_path / "people.csv"
    addresses = _people_csv(sheet, 1_500)
    outbox = Path(settings.outbox_dir)
    first = _run_import(cli_env, sheet)
    _kill_when(first, lambda: outbox.exists() and len(list(outbox.glob("*.eml"))) >= 300)
    mailed_before = len(list(outbox.glob("*.eml")))
    assert mailed_before < len(addresses)
    rerun = _run_import(cli_env, sheet)
    assert rerun.wait(300) == 0, rerun.stderr.read()
    parser = BytesParser(policy=default_policy)
    counts = Counter(
        parser.parse(p.open("rb"), headersonly=True)["To"].addresses[0].addr_spec
        for p in outbox.glob("*.eml")
    )
    assert max(counts.values()) == 1  # nobody twice
    assert len(counts) >= len(addresses) - CONFIRMATION_CLAIM_BATCH  # at most one batch lost


# --- 4.4: a deeply nested, validly signed webhook body ---------------------------------------


def test_deeply_nested_signed_webhook_body_is_a_400(settings, engine) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from newsletter.web import webhooks

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = base64.b64encode(public).decode()
    app = web_app(settings.model_copy(update={"sendgrid_webhook_key": key}))

    def post(web: httpx.Client, body: bytes) -> httpx.Response:
        stamp = str(int(time.time()))
        signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            webhooks.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            webhooks.TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }
        return web.post("/webhooks/sendgrid", content=body, headers=headers)

    event = {"email": "x@example.org", "event": "open", "sg_event_id": "e1", "timestamp": 1}
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as web:
        for depth in (100_000, 40):
            nested = "[" * depth + "]" * depth
            resp = post(web, f'[{{"event": "open", "x": {nested}}}]'.encode())
            assert resp.status_code == 400 and "nested too deeply" in resp.text, resp.text
        ok = post(web, json.dumps([event | {"extra": {"a": [1, {"b": 2}]}}]).encode())
        assert ok.status_code == 200, ok.text


# --- 6.5: a killed sender's temp files --------------------------------------------------------


def test_a_send_removes_temp_files_of_killed_writers(engine, settings, tmp_path) -> None:
    from newsletter.delivery import send_issue
    from newsletter.testing.sample_issue import build_sample_issue
    from newsletter.transports.outbox import OutboxTransport

    with Session(engine) as session:
        build_sample_issue(session, "2026-04", papers=3)
    audience.add_subscriber(
        engine, settings, "reader@example.org", ["optimization"], confirmed=True
    )
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stray = outbox / f".delivery-000000007.{dead.pid}.tmp"  # as a kill -9 mid-write leaves it
    stray.write_bytes(b"Subject: half a mess")
    live = outbox / f".delivery-000000008.{os.getpid()}.tmp"  # a writer still at work
    live.write_bytes(b"Subject: being written")
    report = send_issue(engine, settings, "2026-04", transport=OutboxTransport(outbox))
    assert report.run.sent == 1
    assert not stray.exists() and live.exists()
    assert len(list(outbox.glob("delivery-*.eml"))) == 1


# --- 1.12, 8.6: the admin token on the preview; the preview cookie --------------------------


def _draft(engine, month: str = "2026-06") -> str:
    from newsletter.testing.sample_issue import build_sample_issue

    with Session(engine) as session:
        build_sample_issue(session, month, papers=3)
        session.commit()
    return f"/issues/{month}/preview"


def test_admin_token_guesses_on_the_preview_are_rate_limited(settings, engine) -> None:
    from newsletter.web.preview import ADMIN_TOKEN_GUESSES

    draft = _draft(engine)
    with live_server(web_app(desk_settings(settings))) as base, httpx.Client(base_url=base) as web:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert web.get(draft, headers=bearer).status_code == 200  # the right one counts nothing
        for i in range(ADMIN_TOKEN_GUESSES):
            guess = {"Authorization": f"Bearer guess-{i}"}
            assert web.get(draft, headers=guess).status_code == 404
        assert web.get(draft, headers={"Authorization": "Bearer guess-x"}).status_code == 429
        assert web.get(f"{draft}/email?token=guess-y").status_code == 429
        limited = web.get(draft, headers=bearer)  # past the limit, no answer tells
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert web.get(f"{draft}?token={TOKEN}").status_code == 429
        assert web.get("/issues").status_code == 200  # the rest of the site is not limited


def test_preview_cookie_is_a_desk_session_that_sign_out_ends(settings, engine) -> None:
    draft = _draft(engine)
    with live_server(web_app(desk_settings(settings))) as base:
        with httpx.Client(base_url=base) as web:
            swap = web.get(f"{draft}?token={TOKEN}")
            assert swap.status_code == 303 and TOKEN not in str(swap.headers)
            paths = {c.path for c in web.cookies.jar}
            assert paths == {"/admin", "/issues"}
            cookie = next(c.value for c in web.cookies.jar if c.path == "/issues")
            assert (
                web.get(draft).status_code == 200 and web.get(f"{draft}/email").status_code == 200
            )
            second = httpx.get(f"{base}{draft}?token={TOKEN}")
            assert second.cookies.get("newsletter_admin") != cookie  # not a constant
            csrf = csrf_of(web.get("/admin/issues").text)  # the same session on the desk
            out = web.post("/admin/sign-out", data={"csrf_token": csrf})
            assert out.status_code == 303
        replay = httpx.get(f"{base}{draft}", cookies={"newsletter_admin": cookie})
        assert replay.status_code == 404  # signed out: the preview cookie ended with it
        with httpx.Client(base_url=base) as web:  # a desk sign-in opens the previews too
            desk_sign_in(web)
            assert web.get(draft).status_code == 200
