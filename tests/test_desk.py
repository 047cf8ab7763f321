"""The editor's desk (/admin) through the real app and database: access (404 unconfigured,
sign-in, sessions, CSRF), editing a draft, releasing it through the clock's check, the
report, subscribers, paper upload and the audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from newsletter import approval, release
from newsletter.delivery import preview_plan
from newsletter.delivery.feedback import record_sendgrid_events
from newsletter.desk.previews import audience_by_variant
from newsletter.issues import compose_issue
from newsletter.models import AuditEntry, Delivery, EditorSignIn, Issue, IssuePaper, JobRun, Paper
from newsletter.papers.store import import_paths
from newsletter.rendering import clear_render_cache
from newsletter.settings import load_settings
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.admin import audience as admin_audience
from newsletter.web.admin import drafts as admin_drafts
from newsletter.web.admin import editing as admin_editing
from newsletter.web.admin import history as admin_history
from newsletter.web.admin import issues as admin_issues
from newsletter.web.admin import release as admin_release
from newsletter.web.admin import signin as admin_signin
from newsletter.web.admin import start_here as admin_start_here
from newsletter.web.app import create_app
from subscribers import lifecycle
from subscribers.models import Subscriber

EDITOR = "editor@example.org"
TOKEN = "admin-token-0123456789abcdef-0123456789"  # >= 32: public base URLs need it
MONTH = "2026-05"
LINK_RE = re.compile(r"https?://\S+/admin/sign-in/[A-Za-z0-9_-]+\S*")


def desk_settings(settings, **changes):
    values = {
        "var_dir": settings.var_dir,
        "database_url": settings.database_url,
        "secret_key": settings.secret_key,
        "postal_address": settings.postal_address,
        "editors": EDITOR,
        "admin_token": TOKEN,
        "allowed_hosts": "testserver",  # the Host header of Starlette's TestClient
        "_env_file": None,
    }
    values.update(changes)
    return load_settings(**values)


@pytest.fixture
def desk(settings):
    return desk_settings(settings)


@pytest.fixture
def client(desk) -> TestClient:
    return TestClient(create_app(desk), follow_redirects=False)


def sign_in(client: TestClient) -> str:
    """Sign in with the admin token; returns a CSRF token for the desk's forms."""
    resp = client.post("/admin/sign-in/token", data={"token": TOKEN})
    assert resp.status_code == 303, resp.text
    return csrf_of(client.get("/admin/issues").text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def mails(settings) -> list:
    paths = sorted(Path(settings.outbox_dir).glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [BytesParser(policy=policy.default).parse(p.open("rb")) for p in paths]


def admin_routes() -> list[APIRoute]:
    routers = (
        admin_signin.router,
        admin_issues.router,
        admin_editing.router,
        admin_release.router,
        admin_history.router,
        admin_audience.router,
        admin_drafts.router,
        admin_start_here.router,
    )
    return [r for router in routers for r in router.routes if isinstance(r, APIRoute)]


def concrete(path: str) -> str:
    return (
        path.replace("{month}", MONTH)
        .replace("{paper_id}", "1")
        .replace("{subscriber_id}", "1")
        .replace("{item_id}", "1")
        .replace("{secret}", "not-a-real-link")
    )


def with_issue(engine, papers: int = 8) -> None:
    with Session(engine) as session:
        build_sample_issue(session, MONTH, papers=papers)


# --- access ----------------------------------------------------------------------------------


def test_every_admin_route_is_404_when_no_editor_and_no_token(settings) -> None:
    client = TestClient(create_app(desk_settings(settings, editors="", admin_token="")))
    routes = admin_routes()
    assert len(routes) > 30
    for route in routes:
        for method in route.methods:
            resp = client.request(method, concrete(route.path), follow_redirects=False)
            assert resp.status_code == 404, (method, route.path, resp.status_code)


def test_without_a_session_gets_redirect_or_403(client, engine) -> None:
    with_issue(engine)
    open_paths = {"/admin/sign-in", "/admin/sign-in/token", "/admin/sign-in/{secret}", "/admin"}
    for route in admin_routes():
        if route.path in open_paths:
            continue
        for method in route.methods:
            resp = client.request(method, concrete(route.path))
            if method == "GET":
                assert resp.status_code == 303, route.path
                assert resp.headers["location"].startswith("/admin/sign-in?next=")
            else:
                assert resp.status_code == 403, (method, route.path)
    # A forged cookie is no session either.
    client.cookies.set("newsletter_desk", "forged.value", path="/admin")
    assert client.get("/admin/issues").status_code == 303


def test_sign_in_posts_refuse_other_sites_and_guessing(client, desk) -> None:
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    for path, data in (("/admin/sign-in", {"email": EDITOR}), ("/admin/sign-in/token", {})):
        assert client.post(path, data=data, headers=evil).status_code == 403
    assert mails(desk) == []
    # Ten posts per client in ten minutes, both forms counted together; then 429.
    answers = [
        client.post("/admin/sign-in/token", data={"token": f"guess-{i}"}).status_code
        for i in range(10)
    ]
    assert answers == [403] * 10  # wrong token
    assert client.post("/admin/sign-in/token", data={"token": TOKEN}).status_code == 429
    assert client.post("/admin/sign-in", data={"email": EDITOR}).status_code == 429


def test_sign_in_by_mailed_link_once_and_same_answer_for_anyone(client, desk, engine) -> None:
    stranger = client.post("/admin/sign-in", data={"email": "stranger@example.org"})
    editor = client.post("/admin/sign-in", data={"email": EDITOR.upper()})
    assert stranger.status_code == editor.status_code == 200
    assert stranger.text == editor.text
    sent = mails(desk)
    assert [m["To"] for m in sent] == [EDITOR]
    text = sent[0].get_body(preferencelist=("plain",)).get_content()
    url = LINK_RE.search(text).group(0)
    assert url.startswith("http://127.0.0.1:8000/admin/sign-in/")
    path = "/" + url.split("/", 3)[3]
    # Opening the link (a mail scanner) signs nobody in and spends nothing.
    assert "Sign in as editor@example.org" in client.get(path).text
    assert client.get(path).status_code == 200
    resp = client.post(path)
    assert resp.status_code == 303 and resp.headers["location"] == "/admin/issues"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # http base URL
    assert client.get("/admin/issues").status_code == 200
    # Single use.
    other = TestClient(client.app, follow_redirects=False)
    assert other.post(path).status_code == 400
    with Session(engine) as session:
        row = session.exec(select(EditorSignIn)).one()
        assert row.used_at is not None
        assert row.token_hash not in url  # only a hash is stored
        actions = [a.action for a in session.exec(select(AuditEntry)).all()]
    assert actions == ["desk.sign_in"]


def test_expired_link_and_session_and_sign_out(client, desk, engine) -> None:
    client.post("/admin/sign-in", data={"email": EDITOR})
    text = mails(desk)[0].get_body(preferencelist=("plain",)).get_content()
    path = "/" + LINK_RE.search(text).group(0).split("/", 3)[3]
    with Session(engine) as session:
        session.execute(
            update(EditorSignIn).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    assert client.post(path).status_code == 400
    csrf = sign_in(client)
    from newsletter.models import EditorSession

    resp = client.post("/admin/sign-out", data={"csrf_token": csrf})
    assert resp.status_code == 303
    assert client.get("/admin/issues").status_code == 303
    csrf = sign_in(client)
    with Session(engine) as session:
        session.execute(
            update(EditorSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    assert client.get("/admin/issues").status_code == 303


def test_secure_cookie_on_https(settings) -> None:
    https = desk_settings(settings, base_url="https://news.example.org")
    client = TestClient(create_app(https), base_url="https://news.example.org")
    resp = client.post("/admin/sign-in/token", data={"token": TOKEN}, follow_redirects=False)
    assert "Secure" in resp.headers["set-cookie"]
    assert client.post("/admin/sign-in/token", data={"token": "wrong"}).status_code == 403


def test_csrf_refused_without_its_token(client, engine) -> None:
    with_issue(engine)
    csrf = sign_in(client)
    url = f"/admin/issues/{MONTH}/subject"
    assert client.post(url, data={"subject": "No token"}).status_code == 403
    assert client.post(url, data={"subject": "Bad", "csrf_token": "0" * 64}).status_code == 403
    ok = client.post(url, data={"subject": "Good one", "csrf_token": csrf})
    assert ok.status_code == 303
    with Session(engine) as session:
        assert session.exec(select(Issue)).one().subject == "Good one"


# --- editing -------------------------------------------------------------------------------


def test_editing_a_draft_bumps_revision_and_the_email_follows(client, desk, engine) -> None:
    with_issue(engine)
    clear_render_cache()
    csrf = sign_in(client)
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
        rows = session.exec(
            select(IssuePaper).where(IssuePaper.issue_id == issue.id).order_by(IssuePaper.paper_id)
        ).all()
        ids = [r.paper_id for r in rows]
        start = issue.revision
        june = Issue(month="2026-06")  # a later draft listing the same paper as a late arrival
        session.add(june)
        session.flush()
        session.add(IssuePaper(issue_id=june.id, paper_id=ids[0], topic_slug="general", late=True))
        session.commit()
    base = f"/admin/issues/{MONTH}"

    def post(path: str, **data) -> None:
        resp = client.post(base + path, data={**data, "csrf_token": csrf})
        assert resp.status_code == 303, resp.text

    post("/subject", subject="May's best \r\n papers")
    post("/note", note="Hello **readers** <script>alert(1)</script> [site](javascript:x)")
    post("/lead", paper_id=str(ids[3]))
    post(f"/papers/{ids[0]}", summary="A clearer summary.", topics=["optimization", "transformers"])
    post(f"/papers/{ids[5]}/drop")
    email = client.get(base + "/email").text
    assert "Hello <strong>readers</strong>" in email
    note = re.search(r"Hello <strong>readers</strong>.*?</p>", email, re.S).group(0)
    assert "<script>" not in note and 'href="javascript' not in note, note
    assert "<script>alert" not in email, email[email.index("<script>alert") - 300 :][:400]
    assert "This month&#39;s pick" in email or "This month's pick" in email
    assert "A clearer summary." in email
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
        dropped = session.get(Paper, ids[5])
        assert issue.subject == "May's best papers"  # never a CR/LF in a header
        assert issue.revision == start + 5 and issue.curated
        later = session.exec(select(Issue).where(Issue.month == "2026-06")).one()
        assert later.revision == 2  # its renders of the edited paper are stale too
        assert session.get(IssuePaper, (issue.id, ids[5])) is None
        assert dropped.title not in email
        # The monthly job's recompose leaves the editor's draft as it is.
        result = compose_issue(session, MONTH, desk.title)
        assert not result.changed and session.get(IssuePaper, (issue.id, ids[5])) is None
        session.commit()
    post("/papers/add", paper_id=str(ids[5]))
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
        assert session.get(IssuePaper, (issue.id, ids[5])) is not None
        actions = [a.action for a in session.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [
        "desk.sign_in",
        "issue.subject",
        "issue.note",
        "issue.lead",
        "paper.edit",
        "issue.drop_paper",
        "issue.add_paper",
    ]
    page = client.get("/admin/audit").text
    assert "issue.drop_paper" in page and "admin token" in page
    # Bad input: a page saying what is wrong, nothing changed.
    resp = client.post(
        f"{base}/papers/{ids[0]}", data={"summary": "", "topics": ["x"], "csrf_token": csrf}
    )
    assert resp.status_code == 400 and "summary cannot be empty" in resp.text


def test_preview_shows_variant_sizes_and_subscriber_counts(client, engine) -> None:
    with_issue(engine)
    with Session(engine) as session:
        sets = (
            ["optimization"],
            ["optimization"],
            [],
            ["generative-models"],  # not in this issue: the "none of your topics" variant
            ["transformers", "optimization", "generative-models"],
        )
        for i, topics in enumerate(sets):
            lifecycle.add_confirmed(
                session,
                f"p{i}@example.org",
                topics,
                known_topics={"optimization", "transformers", "generative-models"},
                consent_text_version="test",
                source="cli",
            )
        session.commit()
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        assert len(audience_by_variant(session, issue)) == 4
        assert audience_by_variant(session, issue) == preview_plan(session, issue).variants
    sign_in(client)
    page = client.get(f"/admin/issues/{MONTH}/preview?topics=optimization").text
    assert 'id="frame-desktop"' in page and 'id="frame-mobile"' in page
    row = re.search(r'<tr class="current"><td>Optimization.*?</tr>', page, re.S).group(0)
    assert "<td>2</td>" in row and "KB" in row
    assert "Everything (no topics chosen)" in page
    other = client.get(f"/admin/issues/{MONTH}/preview?topics=transformers").text
    assert "Transformers" in re.search(r'<tr class="current">.*?</tr>', other, re.S).group(0)
    assert client.get(f"/admin/issues/{MONTH}/preview?topics=nope").status_code == 400


# --- releasing -----------------------------------------------------------------------------


def subscribe(engine, n: int) -> None:
    with Session(engine) as session:
        for i in range(n):
            lifecycle.add_confirmed(
                session,
                f"reader{i}@example.org",
                [],
                known_topics=set(),
                consent_text_version="test",
                source="cli",
            )
        session.commit()


def send_test(client: TestClient, base: str, csrf: str, emails: str = EDITOR, **form) -> None:
    resp = client.post(base + "/test", data={"emails": emails, "csrf_token": csrf, **form})
    assert resp.status_code == 303, resp.text


def confirm(client: TestClient, base: str, action: str, csrf: str, **form) -> str:
    """Post the release form, read the confirmation page, confirm its revision; the page."""
    page = client.post(base + f"/{action}", data={"csrf_token": csrf, **form})
    assert page.status_code == 200, page.text
    revision = re.search(r'name="revision" value="(\d+)"', page.text)
    assert revision, page.text
    done = client.post(
        base + f"/{action}", data={"csrf_token": csrf, "revision": revision.group(1), **form}
    )
    assert done.status_code == 303, done.text
    return page.text


def test_test_copy_schedule_clock_sends_and_report(client, desk, engine) -> None:
    with_issue(engine)
    subscribe(engine, 3)
    csrf = sign_in(client)
    base = f"/admin/issues/{MONTH}"
    send_test(client, base, csrf)
    test_copy = mails(desk)[-1]
    assert test_copy["To"] == EDITOR and test_copy["Subject"].startswith("[TEST r1] ")
    # Any address an editor types, for a topic set; more than five at once is refused.
    send_test(client, base, csrf, "x@example.org", variant="optimization")
    assert mails(desk)[-1]["To"] == "x@example.org"
    six = ",".join(f"t{i}@example.org" for i in range(6))
    refused = client.post(base + "/test", data={"emails": six, "csrf_token": csrf})
    assert refused.status_code == 400 and "at most 5" in refused.text
    when = datetime.now(UTC) + timedelta(hours=2)
    page = confirm(client, base, "schedule", csrf, when=when.strftime("%Y-%m-%dT%H:%M"))
    assert re.search(r'data-field="recipients">3<', page) and "was test-sent" in page
    assert release.send_due_issues(engine, desk, deliver_here=True) == []  # not yet
    # An edit after scheduling withdraws the schedule: the clock sends nothing, the page says
    # why, the audit log names it.
    client.post(base + "/note", data={"note": "Edited later", "csrf_token": csrf})
    draft = client.get(base).text
    assert 'id="withdrawn"' in draft and "editor&#39;s note changed" in draft
    assert "Changed since the last test copy" in draft
    assert release.send_due_issues(engine, desk, now=when + timedelta(minutes=1)) == []
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        assert (issue.status, issue.scheduled_for, issue.approved_revision) == ("draft", None, None)
        withdrawn = session.exec(
            select(AuditEntry).where(AuditEntry.action == "issue.approval_withdrawn")
        ).one()
        assert withdrawn.actor != "clock" and "note changed" in withdrawn.detail
    # The new revision was never test-sent: the confirmation says so and cannot be confirmed.
    untested = client.post(
        base + "/schedule", data={"when": when.strftime("%Y-%m-%dT%H:%M"), "csrf_token": csrf}
    )
    assert "was never test-sent" in untested.text and 'name="revision"' not in untested.text
    send_test(client, base, csrf)
    assert mails(desk)[-1]["Subject"].startswith("[TEST r2] ")
    confirm(client, base, "schedule", csrf, when=when.strftime("%Y-%m-%dT%H:%M"))
    done = release.send_due_issues(engine, desk, now=when + timedelta(minutes=1), deliver_here=True)
    assert done == [f"{MONTH}: sent"]
    progress = client.get(base + "/progress.json").json()
    assert progress["status"] == "sent" and progress["sent"] == 3 and progress["left"] == 0
    issue_mails = [m for m in mails(desk) if m["To"].startswith("reader")]
    assert (
        len(issue_mails) == 3
        and "Edited later" in issue_mails[0].get_body(preferencelist=("plain",)).get_content()
    )
    # Feedback: a bounce for one delivery, an unsubscribe by another reader. (By subscriber:
    # planning in SQL promises no delivery order, and deliveries[0] must be reader0's.)
    with Session(engine) as session:
        deliveries = session.exec(select(Delivery).order_by(Delivery.subscriber_id)).all()
        record_sendgrid_events(
            session,
            [
                {
                    "sg_event_id": "ev-1",
                    "event": "bounce",
                    "email": "reader0@example.org",
                    "reason": "550 5.1.1 no such user",
                    "delivery_id": str(deliveries[0].id),
                }
            ],
        )
        sub = session.get(Subscriber, deliveries[1].subscriber_id)
        lifecycle.unsubscribe(session, sub, source="one-click")
        session.commit()
        runs = session.exec(select(JobRun).where(JobRun.job == "scheduled-send")).all()
        assert [r.outcome for r in runs] == ["sent"]
    report = client.get(base + "/report").text
    assert re.search(r"<dt>sent</dt><dd>3</dd>", report)
    assert re.search(r"<dt>bounce</dt><dd>1</dd>", report)
    assert re.search(r"<dt>unsubscribed</dt><dd>1</dd>", report)
    assert "550 5.1.1 no such user" in report


def test_approve_pause_resume_and_missed_schedule(client, desk, engine) -> None:
    with_issue(engine)
    subscribe(engine, 2)
    csrf = sign_in(client)
    base = f"/admin/issues/{MONTH}"
    send_test(client, base, csrf)
    confirm(client, base, "approve", csrf)
    # The clock plans (PostgreSQL: workers deliver), then an editor pauses.
    assert release.send_due_issues(engine, desk, deliver_here=False) == [f"{MONTH}: sending"]
    assert client.post(base + "/pause", data={"csrf_token": csrf}).status_code == 303
    with Session(engine) as session:
        assert session.exec(select(Issue)).one().status == "paused"
    # A schedule older than the send does not resume it; an editor's resume does.
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        issue.scheduled_for = issue.send_started_at - timedelta(minutes=5)
        session.add(issue)
        session.commit()
    assert release.send_due_issues(engine, desk, deliver_here=True) == []
    assert client.post(base + "/resume", data={"csrf_token": csrf}).status_code == 303
    assert release.send_due_issues(engine, desk, deliver_here=True) == [f"{MONTH}: sent"]
    assert len([m for m in mails(desk) if m["To"].startswith("reader")]) == 2
    # Pause of a sent issue is refused with a reason.
    resp = client.post(base + "/pause", data={"csrf_token": csrf})
    assert resp.status_code == 400 and "only a send in progress" in resp.text


def test_a_schedule_missed_beyond_the_cutoff_is_not_sent_late(desk, engine) -> None:
    with_issue(engine)
    subscribe(engine, 1)
    untested = desk.model_copy(update={"require_test_copy": False})
    with Session(engine) as session:
        when = datetime.now(UTC)
        approval.schedule(session, untested, MONTH, when, 1, "someone")
        session.commit()
    later = when + timedelta(hours=desk.send_cutoff_hours + 1)
    assert release.send_due_issues(engine, desk, now=later) == [f"{MONTH}: missed"]
    with Session(engine) as session:
        assert session.exec(select(Issue)).one().status == "approved"
        assert session.exec(select(Delivery)).all() == []


# --- subscribers, papers -------------------------------------------------------------------


def test_subscribers_search_change_suppress_erase_export(client, engine) -> None:
    subscribe(engine, 3)
    csrf = sign_in(client)
    page = client.get("/admin/subscribers?q=reader1").text
    assert "reader1@example.org" in page and "reader2@example.org" not in page
    assert re.search(r"<dt>active</dt><dd>3</dd>", page)
    sub_id = int(re.search(r'href="/admin/subscribers/(\d+)"', page).group(1))
    url = f"/admin/subscribers/{sub_id}"
    post = client.post(url + "/topics", data={"topics": ["optimization"], "csrf_token": csrf})
    assert post.status_code == 303
    assert "optimization" in client.get("/admin/subscribers?topic=optimization").text
    detail = client.get(url).text
    assert "preferences" in detail and "Consent history" in detail
    assert (
        client.post(
            url + "/suppress", data={"reason": "asked by phone", "csrf_token": csrf}
        ).status_code
        == 303
    )
    assert 'id="sub-status">suppressed' in client.get(url).text
    wrong = client.post(url + "/erase", data={"confirm_email": "x@example.org", "csrf_token": csrf})
    assert wrong.status_code == 400
    right = client.post(
        url + "/erase", data={"confirm_email": "reader1@example.org", "csrf_token": csrf}
    )
    assert right.status_code == 303
    assert client.post("/admin/subscribers/export.csv").status_code == 403  # no CSRF token
    export = client.post("/admin/subscribers/export.csv", data={"csrf_token": csrf})
    assert export.headers["content-disposition"] == 'attachment; filename="subscribers.csv"'
    csv_text = export.text
    assert csv_text.splitlines()[0].startswith("email") and "reader1" not in csv_text
    with Session(engine) as session:
        entries = session.exec(select(AuditEntry)).all()
        assert not any("reader1" in e.target + e.detail for e in entries)  # erased is erased
        assert {e.action for e in entries} >= {"subscriber.erase", "subscriber.suppress"}


def test_paper_upload_same_messages_as_the_cli(client, engine, tmp_path) -> None:
    csrf = sign_in(client)
    bad = (
        b'[{"title": "A paper", "summary": "S", "url": "https://x.org/1", "published": "2026-13"}]'
    )
    resp = client.post(
        "/admin/papers/import",
        data={"format": "auto", "csrf_token": csrf},
        files={"file": ("may.json", bad, "application/json")},
    )
    assert resp.status_code == 400
    path = tmp_path / "may.json"
    path.write_bytes(bad)
    cli_message = str(import_paths(engine, [path])[0].error).replace(str(path), "may.json")
    assert cli_message.startswith("may.json")
    assert cli_message.replace("'", "&#39;") in resp.text
    good = bad.replace(b"2026-13", b"2026-05")
    resp = client.post(
        "/admin/papers/import",
        data={"format": "auto", "csrf_token": csrf},
        files={"file": ("may.json", good, "application/json")},
    )
    assert resp.status_code == 200 and "1 added" in resp.text
    assert "A paper" in client.get("/admin/papers?month=2026-05").text


def test_paper_upload_over_the_body_cap_is_refused_and_imports_nothing(settings, engine) -> None:
    client = TestClient(
        create_app(desk_settings(settings, max_body_bytes=64 * 1024)), follow_redirects=False
    )
    csrf = sign_in(client)
    assert "up to 0.1 MB" in client.get("/admin/papers").text  # the form says the limit
    paper = {
        "title": "Big",
        "summary": "S" * 1000,
        "url": "https://x.org/1",
        "published": "2026-05",
    }
    big = json.dumps([{**paper, "title": f"Big {i}"} for i in range(100)]).encode()
    resp = client.post(
        "/admin/papers/import",
        data={"format": "auto", "csrf_token": csrf},
        files={"file": ("big.json", big, "application/json")},
    )
    assert resp.status_code == 413
    with Session(engine) as session:
        assert session.exec(select(Paper)).all() == []


def test_monthly_job_leaves_an_issue_scheduled_for_later(desk, engine) -> None:
    from newsletter.monthly import run_monthly_job
    from newsletter.scheduler import SCHEDULED_SEND_JOB_ID, build_clock

    with_issue(engine)
    subscribe(engine, 1)
    now = datetime.now(UTC)
    untested = desk.model_copy(update={"require_test_copy": False})
    with Session(engine) as session:
        approval.schedule(session, untested, MONTH, now + timedelta(days=2), 1, "someone")
        session.commit()
    outcome = run_monthly_job(engine, desk, month=MONTH, scheduled_for=now, now=now)
    assert outcome.outcome == "scheduled" and outcome.ok
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []
    import threading

    clock = build_clock(engine, desk, threading.Event())
    assert clock.get_job(SCHEDULED_SEND_JOB_ID) is not None


def test_doubtful_tagging_is_flagged_and_an_editor_save_clears_it(client, desk, engine, tmp_path):
    papers = [
        {
            "title": "Step sizes for Adam at the edge of stability",
            "summary": "Sharpness and the learning rate of adaptive optimizers.",
            "url": "https://example.org/a",
            "published": "2026-05-04",
        },
        {
            "title": "A note on reading groups",
            "summary": "How our lab picks what to read each week.",
            "url": "https://example.org/b",
            "published": "2026-05-05",
        },
    ]
    path = tmp_path / "may.json"
    path.write_text(json.dumps(papers), encoding="utf-8")
    assert import_paths(engine, [path])[0].ok
    with Session(engine) as session:
        compose_issue(session, MONTH, desk.title)
        session.commit()
        note = session.exec(select(Paper).where(Paper.title == papers[1]["title"])).one()
        adam = session.exec(select(Paper).where(Paper.title == papers[0]["title"])).one()
        assert (note.topic_confidence, adam.topic_confidence) == (0.0, 1.0)
        revision = session.exec(select(Issue).where(Issue.month == MONTH)).one().revision
    csrf = sign_in(client)
    page = client.get(f"/admin/issues/{MONTH}").text
    assert "1 paper to check" in page
    assert page.count("check topics: general") == 1
    resp = client.post(
        f"/admin/issues/{MONTH}/papers/{note.id}",
        data={"summary": note.summary, "topics": ["general"], "csrf_token": csrf},
    )
    assert resp.status_code == 303, resp.text
    page = client.get(f"/admin/issues/{MONTH}").text
    assert "check topics" not in page and "to check" not in page
    with Session(engine) as session:
        assert session.get(Paper, note.id).topic_confidence is None
        assert session.exec(select(Issue).where(Issue.month == MONTH)).one().revision == revision
        actions = [a.action for a in session.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions[-1] == "paper.topics.confirm"
