"""The public web app through HTTP, on SQLite and PostgreSQL: every bad input of the issue,
double opt-in, preferences, one-click unsubscribe, archive, feed, preview and outbox."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import feedparser
import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import Session, select

from newsletter.models import Issue, IssueStatus, Topic
from newsletter.settings import load_settings
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from newsletter.web.ratelimit import ClientRateLimiter
from subscribers.models import ConsentRecord, Subscriber

URL_RE = re.compile(r"https?://[^\s<>\"]+")


@pytest.fixture
def client(settings) -> TestClient:
    app = create_app(settings)
    app.state.subscribe_limiter = ClientRateLimiter(1000, 600)
    return TestClient(app, follow_redirects=False)


def mails(settings) -> list:
    """Every email in the outbox, oldest first."""
    paths = sorted(
        Path(settings.outbox_dir).glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name)
    )
    out = []
    for path in paths:
        with path.open("rb") as fh:
            out.append(BytesParser(policy=policy.default).parse(fh))
    return out


def links_in(msg) -> dict[str, str]:
    """purpose -> site-relative path of the links in an email's text part."""
    text = msg.get_body(preferencelist=("plain",)).get_content()
    found = {}
    for url in URL_RE.findall(text):
        for purpose in ("confirm", "preferences", "unsubscribe"):
            if f"/{purpose}/" in url:
                found[purpose] = "/" + url.split("/", 3)[3]
    return found


def subscriber(engine, email: str) -> Subscriber | None:
    with Session(engine) as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def subscribe_and_confirm(client, settings, email="ada@example.org", topics=("optimization",)):
    assert (
        client.post("/subscribe", data={"email": email, "topics": list(topics)}).status_code == 200
    )
    confirm = links_in(mails(settings)[-1])["confirm"]
    assert client.post(confirm).status_code == 200
    return links_in(mails(settings)[-1])  # the welcome email: preferences and unsubscribe


def publish(engine, month: str, *, sent: bool = True, papers: int = 10) -> None:
    with Session(engine) as session:
        issue = build_sample_issue(session, month, papers=papers)
        if sent:
            issue.status = IssueStatus.SENT
            issue.sent_at = datetime.fromisoformat(f"{month}-28T09:00:00+00:00")
        session.commit()


# --- pages and headers -------------------------------------------------------------------


def test_landing_has_form_topics_and_security_headers(client, engine) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    with Session(engine) as session:
        slugs = [t.slug for t in session.exec(select(Topic)).all()]
    for slug in slugs:
        assert f'value="{slug}"' in resp.text
    assert 'name="website"' in resp.text  # honeypot
    csp = resp.headers["content-security-policy"]
    script = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
    assert "unsafe-inline" not in script and "frame-ancestors 'none'" in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "same-origin"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in resp.text
    assert client.get("/static/site.css").status_code == 200


def test_unknown_page_is_a_404_page(client) -> None:
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and "<h1>Page not found</h1>" in resp.text


# --- subscribing -------------------------------------------------------------------------


def test_same_answer_whatever_the_address_is(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings, "active@example.org")
    client.post(links["unsubscribe"])
    client.post("/subscribe", data={"email": "left@example.org"})
    confirm = links_in(mails(settings)[-1])["confirm"]
    client.post(confirm)
    client.post(links_in(mails(settings)[-1])["unsubscribe"])
    client.post("/subscribe", data={"email": "pending@example.org"})
    with Session(engine) as session:
        from subscribers import lifecycle

        lifecycle.subscribe(session, "bounced@example.org", [], known_topics=set())
        lifecycle.suppress(session, "bounced@example.org", "bounce")
        session.commit()
    answers = {
        email: client.post("/subscribe", data={"email": email, "topics": ["optimization"]})
        for email in (
            "new@example.org",
            "pending@example.org",
            "active@example.org",
            "left@example.org",
            "bounced@example.org",
        )
    }
    assert {r.status_code for r in answers.values()} == {200}
    assert len({r.text for r in answers.values()}) == 1
    assert len({tuple(sorted(r.headers.keys())) for r in answers.values()}) == 1
    assert subscriber(engine, "left@example.org").status == "pending"  # must confirm again
    assert subscriber(engine, "bounced@example.org").status == "suppressed"
    assert not [m for m in mails(settings) if m["To"] == "bounced@example.org"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "enter an email address"),
        ({"email": ""}, "enter an email address"),
        ({"email": "x" * 400 + "@example.org"}, "too long"),
        ({"email": "y" * 70 + "@example.org"}, "too long"),
        ({"email": "not-an-address"}, "not a valid email address"),
        ({"email": "a@b"}, "not a valid email address"),
        ({"email": "a@b.com\r\nBcc: x@evil.example"}, "line breaks"),
        ({"email": "a@b.com\nBcc: x"}, "line breaks"),
        ({"email": "ok@example.org", "topics": ["optimization", "nope"]}, "unknown topic"),
        ({"email": "ok@example.org", "topics": ["<script>"]}, "unknown topic"),
    ],
)
def test_subscribe_bad_input(client, settings, engine, data, needle) -> None:
    resp = client.post("/subscribe", data=data)
    assert resp.status_code == 400
    assert needle in resp.text
    assert "<script>" not in resp.text  # escaped when shown back
    with Session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []
    assert mails(settings) == []


def test_subscribe_refuses_a_body_that_is_not_our_form(client, engine) -> None:
    too_many = "&".join(["topics=optimization"] * 200 + ["email=a%40example.org"])
    resp = client.post(
        "/subscribe",
        content=too_many,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400
    upload = client.post(
        "/subscribe", data={"email": "a@example.org"}, files={"f": ("x.txt", b"hi")}
    )
    assert upload.status_code == 400
    for content_type, body in (
        ("multipart/form-data; boundary=zzz", b"--zzz\r\nnonsense"),
        ("multipart/form-data", b"no boundary at all"),
        ("application/x-www-form-urlencoded", b"email=%ff%fe%00@example.org"),
        ("application/json", b'{"email": "a@example.org"}'),
    ):
        resp = client.post("/subscribe", content=body, headers={"Content-Type": content_type})
        assert resp.status_code == 400, content_type
    with Session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []


def test_honeypot_answers_the_same_and_does_nothing(client, settings, engine) -> None:
    normal = client.post("/subscribe", data={"email": "real@example.org"})
    bot = client.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam"})
    assert bot.status_code == 200 and bot.text == normal.text
    assert subscriber(engine, "bot@example.org") is None
    assert [m["To"] for m in mails(settings)] == ["real@example.org"]


def test_repeated_posts_send_at_most_three_confirmations_a_day(client, settings, engine) -> None:
    for _ in range(6):
        assert client.post("/subscribe", data={"email": "rep@example.org"}).status_code == 200
    assert len(mails(settings)) == 3
    with Session(engine) as session:
        assert len(session.exec(select(Subscriber)).all()) == 1


def test_per_client_rate_limit_answers_429_with_a_page(settings) -> None:
    client = TestClient(create_app(settings))  # the real limit
    codes = [
        client.post("/subscribe", data={"email": f"r{i}@example.org"}).status_code
        for i in range(12)
    ]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]
    resp = client.post("/subscribe", data={"email": "late@example.org"})
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
    assert "Too many requests" in resp.text and resp.headers["content-type"].startswith("text/html")


def test_subscribe_accepts_cross_site_form_posts(client, settings) -> None:
    resp = client.post(
        "/subscribe",
        data={"email": "embedded@example.org"},
        headers={"Origin": "https://blog.example.net", "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status_code == 200 and len(mails(settings)) == 1


def test_confirmation_email_and_confirm_records_consent(client, settings, engine) -> None:
    client.post("/subscribe", data={"email": "Ada@Example.org", "topics": ["transformers"]})
    (msg,) = mails(settings)
    assert msg["To"] == "ada@example.org"
    assert "\n" not in msg["Subject"] and "confirm" in msg["Subject"].lower()
    confirm = links_in(msg)["confirm"]
    assert subscriber(engine, "ada@example.org").status == "pending"
    # A link scanner opening the link (GET, twice) changes nothing and sends nothing.
    for _ in range(2):
        page = client.get(confirm)
        assert page.status_code == 200 and "Confirm subscription" in page.text
        assert "ada@example.org" in page.text and f'action="{confirm}"' in page.text
    assert subscriber(engine, "ada@example.org").status == "pending"
    assert len(mails(settings)) == 1
    resp = client.post(confirm)  # the button: no cookie, no body needed
    assert resp.status_code == 200 and "subscribed" in resp.text
    sub = subscriber(engine, "ada@example.org")
    assert sub.status == "active" and sub.confirmed_at is not None
    with Session(engine) as session:
        record = session.exec(select(ConsentRecord).where(ConsentRecord.action == "confirm")).one()
    assert record.client_address == "testclient" and record.consent_text_version
    # A second click: still a friendly page, no second welcome email, no second record.
    assert client.post(confirm).status_code == 200
    assert "already subscribed" in client.get(confirm).text
    assert len(mails(settings)) == 2 and "Welcome" in mails(settings)[1]["Subject"]


def _expired_token(settings, purpose: str, sub: Subscriber) -> str:
    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - 8 * 24 * 3600)

    serializer = URLSafeTimedSerializer(
        settings.secret, salt=f"newsletter.{purpose}", signer=PastSigner
    )
    return serializer.dumps([sub.id, sub.token_version])


def test_tampered_expired_and_misused_tokens(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings)
    client.post("/subscribe", data={"email": "pend@example.org"})
    confirm = links_in(mails(settings)[-1])["confirm"]
    token = confirm.rsplit("/", 1)[1]
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    expired = _expired_token(settings, "confirm", subscriber(engine, "pend@example.org"))
    pref_token = links["preferences"].rsplit("/", 1)[1]
    cases = [
        ("get", f"/confirm/{tampered}"),
        ("get", f"/confirm/{expired}"),
        ("get", f"/confirm/{pref_token}"),  # another purpose
        ("get", "/confirm/" + "A" * 600),
        ("post", f"/confirm/{tampered}"),
        ("post", f"/confirm/{expired}"),
        ("get", "/preferences/not-a-token"),
        ("post", "/preferences/not-a-token"),
        ("get", f"/unsubscribe/{pref_token}"),
        ("post", f"/unsubscribe/{pref_token}"),
        ("post", f"/resubscribe/{pref_token}"),
    ]
    for method, path in cases:
        resp = getattr(client, method)(path)
        assert resp.status_code == 400, (method, path)
        assert "This link does not work" in resp.text
    assert "expired" in client.get(f"/confirm/{expired}").text
    assert subscriber(engine, "pend@example.org").status == "pending"
    assert subscriber(engine, "ada@example.org").status == "active"


def test_erase_invalidates_every_link(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings)
    with Session(engine) as session:
        from subscribers import lifecycle

        lifecycle.erase(session, "ada@example.org")
        session.commit()
    assert client.get(links["preferences"]).status_code == 400
    assert client.post(links["unsubscribe"]).status_code == 400


# --- preferences ---------------------------------------------------------------------------


def test_preferences_change_topics_pause_and_resume(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings, topics=("optimization", "transformers"))
    page = client.get(links["preferences"])
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"  # a page behind a personal token
    assert re.search(r'value="optimization" checked', page.text)
    assert not re.search(r'value="graph-learning" checked', page.text)
    saved = client.post(
        links["preferences"], data={"action": "save", "topics": ["graph-learning", "general"]}
    )
    assert saved.status_code == 200 and "Saved" in saved.text
    with Session(engine) as session:
        from subscribers import lifecycle

        sub = session.exec(select(Subscriber)).one()
        assert lifecycle.topics_of(session, sub) == ["general", "graph-learning"]
    # Posting the same thing again is harmless.
    again = client.post(
        links["preferences"], data={"action": "save", "topics": ["graph-learning", "general"]}
    )
    assert again.status_code == 200
    assert client.post(links["preferences"], data={"action": "pause"}).status_code == 200
    assert subscriber(engine, "ada@example.org").status == "paused"
    assert client.post(links["preferences"], data={"action": "resume"}).status_code == 200
    assert subscriber(engine, "ada@example.org").status == "active"


def test_preferences_bad_input_changes_nothing(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings, topics=("optimization",))
    bad = client.post(links["preferences"], data={"action": "save", "topics": ["nope"]})
    assert bad.status_code == 400 and "unknown topic" in bad.text
    assert client.post(links["preferences"], data={"action": "explode"}).status_code == 400
    with Session(engine) as session:
        from subscribers import lifecycle

        sub = session.exec(select(Subscriber)).one()
        assert lifecycle.topics_of(session, sub) == ["optimization"]


def test_preferences_refuse_cross_site_posts(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings)
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        resp = client.post(links["preferences"], data={"action": "pause"}, headers=headers)
        assert resp.status_code == 403, headers
    assert subscriber(engine, "ada@example.org").status == "active"
    same = client.post(
        links["preferences"],
        data={"action": "pause"},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 200 and subscriber(engine, "ada@example.org").status == "paused"


# --- unsubscribing ---------------------------------------------------------------------------


def test_get_unsubscribe_never_unsubscribes(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings)
    for _ in range(3):
        page = client.get(links["unsubscribe"])
        assert page.status_code == 200 and "<button" in page.text
    assert subscriber(engine, "ada@example.org").status == "active"


def test_one_click_unsubscribe_rfc8058(client, settings, engine) -> None:
    links = subscribe_and_confirm(client, settings)
    fresh = TestClient(client.app, follow_redirects=False)  # no cookies at all
    resp = fresh.post(
        links["unsubscribe"],
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200
    assert "set-cookie" not in resp.headers and "location" not in resp.headers
    assert subscriber(engine, "ada@example.org").status == "unsubscribed"
    # Idempotent, and multipart works the same.
    again = fresh.post(links["unsubscribe"], files={"List-Unsubscribe": (None, "One-Click")})
    assert again.status_code == 200 and "unsubscribed" in again.text
    with Session(engine) as session:
        actions = session.exec(
            select(ConsentRecord.action).where(ConsentRecord.action == "unsubscribe")
        ).all()
    assert len(actions) == 1


def test_resubscribe_from_the_unsubscribed_page_needs_confirmation(client, settings, engine):
    links = subscribe_and_confirm(client, settings, topics=("transformers",))
    page = client.post(links["unsubscribe"])
    match = re.search(r'action="(/resubscribe/[^"]+)"', page.text)
    assert match
    before = len(mails(settings))
    resp = client.post(match.group(1))
    assert resp.status_code == 200 and "Check your inbox" in resp.text
    assert subscriber(engine, "ada@example.org").status == "pending"
    assert len(mails(settings)) == before + 1
    new_confirm = links_in(mails(settings)[-1])["confirm"]
    assert client.post(new_confirm).status_code == 200
    assert subscriber(engine, "ada@example.org").status == "active"


# --- archive, feed, preview ----------------------------------------------------------------


def test_archive_lists_sent_issues_newest_first(client, engine) -> None:
    publish(engine, "2026-03")
    publish(engine, "2026-05")
    publish(engine, "2026-06", sent=False)
    page = client.get("/issues")
    assert page.status_code == 200
    assert page.headers["cache-control"].startswith("public")
    assert page.text.index("May 2026") < page.text.index("March 2026")
    assert "June 2026" not in page.text
    landing = client.get("/")
    assert 'href="/issues/2026-05"' in landing.text


def test_issue_web_version(client, engine, settings) -> None:
    publish(engine, "2026-05")
    publish(engine, "2026-06", sent=False)
    resp = client.get("/issues/2026-05")
    assert resp.status_code == 200 and "May 2026" in resp.text
    assert "__NL_" not in resp.text and "PREVIEW-NOT-A-REAL-TOKEN" not in resp.text
    assert "/unsubscribe/" not in resp.text and "/preferences/" not in resp.text
    assert "&lt;b&gt;not&lt;/b&gt;" in resp.text  # paper text escaped
    assert "'unsafe-inline'" not in resp.headers["content-security-policy"]
    # A page of the site for a web reader, not the email: site chrome, no email wording.
    assert '<header class="site">' in resp.text and '<footer class="site">' in resp.text
    assert "You receive this email" not in resp.text and "/#manage" not in resp.text
    assert 'action="/subscribe"' in resp.text and "Get the next issue by email" in resp.text
    base = settings.base_url
    assert f'<link rel="canonical" href="{base}/issues/2026-05">' in resp.text
    assert '<meta property="og:title" content="' in resp.text
    assert '<meta property="og:description" content="10 new papers' not in resp.text  # 1 late
    assert '<meta property="og:description" content="9 new papers and 1 late arrival' in resp.text
    topics = client.get("/issues/2026-05?topics=graph-learning")
    assert f'<link rel="canonical" href="{base}/issues/2026-05">' in topics.text
    assert topics.status_code == 200 and topics.text != resp.text
    assert client.get("/issues/2026-05?topics=nope").status_code == 400
    for month in ("2026-06", "2026-07", "2026-13", "nonsense", "2026-5"):
        missing = client.get(f"/issues/{month}")
        assert missing.status_code == 404 and "No such issue" in missing.text


def test_issue_being_sent_is_readable_but_not_yet_archived(client, engine) -> None:
    publish(engine, "2026-07", sent=False)
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == "2026-07")).one()
        issue.status = IssueStatus.SENDING
        issue.send_started_at = datetime(2026, 8, 1, 9, tzinfo=UTC)
        session.commit()
    assert client.get("/issues/2026-07").status_code == 200  # "view in your browser" works
    assert client.get("/issues/2026-07/preview").status_code == 200
    assert "July 2026" not in client.get("/issues").text


def test_atom_feed_is_valid(client, engine) -> None:
    publish(engine, "2026-03")
    publish(engine, "2026-05")
    publish(engine, "2026-06", sent=False)
    resp = client.get("/issues/feed.xml")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(resp.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert [e.link for e in feed.entries] == [
        "http://127.0.0.1:8000/issues/2026-05",
        "http://127.0.0.1:8000/issues/2026-03",
    ]
    assert all(e.id and e.updated and e.title for e in feed.entries)
    assert feed.feed.title == "What's new in ML Foundations"
    empty = feedparser.parse(TestClient(client.app).get("/issues/feed.xml").content)
    assert not empty.bozo


def h2_sections(html: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", h).replace("&amp;", "&")
        for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html, flags=re.S)
    ]


def test_preview_of_a_sent_issue(client, engine) -> None:
    publish(engine, "2026-05")
    page = client.get("/issues/2026-05/preview?topics=graph-learning,transformers")
    assert page.status_code == 200
    assert 'sandbox="' in page.text and "allow-scripts" not in page.text
    assert 'src="/issues/2026-05/preview/email?topics=graph-learning%2Ctransformers"' in page.text
    assert re.search(r'value="graph-learning" checked', page.text)
    email = client.get("/issues/2026-05/preview/email?topics=graph-learning&topics=transformers")
    assert email.status_code == 200
    assert email.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in email.headers["content-security-policy"]
    sections = h2_sections(email.text)
    assert sections[:3] == [
        "Transformers & sequence models",
        "Graph & geometric learning",
        "Also this month",
    ]


def test_preview_bad_input(client, engine) -> None:
    publish(engine, "2026-05")
    bad = client.get("/issues/2026-05/preview?topics=optimization,bogus")
    assert bad.status_code == 400 and "bogus" in bad.text
    assert client.get("/issues/2026-05/preview/email?topics=bogus").status_code == 400
    for month in ("2026-07", "1999-01", "2026-13", "abc"):
        missing = client.get(f"/issues/{month}/preview")
        assert missing.status_code == 404 and "No such issue" in missing.text


def test_draft_preview_needs_the_admin_token(engine, db_url, tmp_path) -> None:
    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        secret_key="k" * 32,
        admin_token="editor-token-123",
        _env_file=None,
    )
    publish(engine, "2026-06", sent=False)
    client = TestClient(create_app(settings), follow_redirects=False)
    assert client.get("/issues/2026-06/preview").status_code == 404
    assert client.get("/issues/2026-06").status_code == 404  # drafts are never public
    assert client.get("/issues/2026-06/preview?token=wrong").status_code == 404
    assert (
        client.get(
            "/issues/2026-06/preview", headers={"Authorization": "Bearer editor-token-123"}
        ).status_code
        == 200
    )
    swap = client.get("/issues/2026-06/preview?token=editor-token-123&topics=optimization")
    assert swap.status_code == 303
    assert swap.headers["location"] == "/issues/2026-06/preview?topics=optimization"
    cookie = swap.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "editor-token-123" not in cookie
    # The cookie now authorises the page and the iframe's own request.
    assert client.get(swap.headers["location"]).status_code == 200
    assert client.get("/issues/2026-06/preview/email?topics=optimization").status_code == 200
    anonymous = TestClient(client.app)
    assert anonymous.get("/issues/2026-06/preview/email").status_code == 404


def test_no_open_redirects(client, engine) -> None:
    publish(engine, "2026-05")
    for path in (
        "/issues/2026-05/preview?topics=//evil.example",
        "/confirm/x?next=https://evil.example",
        "//evil.example/",
        "/issues/2026-05?next=https://evil.example",
    ):
        resp = client.get(path)
        assert resp.status_code not in (301, 302, 303, 307, 308), path


# --- outbox viewer ---------------------------------------------------------------------------


def test_outbox_lists_newest_first_and_shows_a_message(client, settings) -> None:
    client.post("/subscribe", data={"email": "first@example.org"})
    client.post("/subscribe", data={"email": "second@example.org"})
    page = client.get("/outbox")
    assert page.status_code == 200
    assert 'href="/outbox"' in client.get("/").text  # the nav points newcomers to it
    assert page.text.index("second@example.org") < page.text.index("first@example.org")
    ids = re.findall(r'href="/outbox/([^"]+)"', page.text)
    message = client.get(f"/outbox/{ids[0]}")
    assert message.status_code == 200
    assert "second@example.org" in message.text and "/confirm/" in message.text
    assert f'src="/outbox/{ids[0]}/html"' in message.text and "sandbox=" in message.text
    html = client.get(f"/outbox/{ids[0]}/html")
    assert html.status_code == 200 and html.headers["x-frame-options"] == "SAMEORIGIN"
    for bad in ("../secret_key", "..%2Fsecret_key", ".hidden", "nope"):
        assert client.get(f"/outbox/{bad}").status_code == 404, bad


def test_outbox_does_not_exist_elsewhere(db_url, tmp_path) -> None:
    public = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        base_url="https://news.example.org",
        secret_key="s" * 32,
        _env_file=None,
    )
    smtp = load_settings(
        var_dir=tmp_path / "var", database_url=db_url, mail_backend="smtp", _env_file=None
    )
    for settings in (public, smtp):
        client = TestClient(create_app(settings))
        assert client.get("/outbox").status_code == 404
        assert "/outbox" not in client.post("/subscribe", data={"email": "a@example.org"}).text
        assert "/outbox" not in client.post("/subscribe", data={"email": "a@example.org"}).text
        assert client.get("/outbox/anything").status_code == 404


def test_subscribe_answers_even_when_the_mail_server_is_down(db_url, tmp_path, engine) -> None:
    from newsletter.testing.live_server import free_port

    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        mail_backend="smtp",
        smtp_url=f"smtp://127.0.0.1:{free_port()}",  # nothing listens there
        _env_file=None,
    )
    client = TestClient(create_app(settings))
    resp = client.post("/subscribe", data={"email": "patient@example.org"})
    assert resp.status_code == 200 and "Check your inbox" in resp.text
    assert subscriber(engine, "patient@example.org").status == "pending"
