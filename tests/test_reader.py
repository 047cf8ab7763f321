"""The reader's side, against a real uvicorn server on SQLite and PostgreSQL: "email me my
link" (same answer for any address, mails only known ones, limited), "subscribe again" from
a revisited unsubscribe link (a fresh double opt-in), and the Atom feed with the papers."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import feedparser
import httpx
import pytest
from sqlmodel import Session, col, select

from newsletter import audience
from newsletter.models import Issue, IssuePaper, IssueStatus, Paper
from newsletter.settings import Settings, load_settings
from newsletter.testing.live_server import free_port, live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from subscribers import lifecycle
from subscribers.models import ConsentRecord, Subscriber
from tests.test_web import links_in, mails, subscriber


@pytest.fixture
def site(db_url, tmp_path, engine) -> Iterator[tuple[httpx.Client, Settings]]:
    """A live server whose links point at itself, and an HTTP client for it."""
    port = free_port()
    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="reader-test-secret-0123456789abcdef",
        postal_address="1 Test Street, Testville",
        _env_file=None,
    )
    app = create_app(settings, bind_host="127.0.0.1")
    with (
        live_server(app, port=port) as base_url,
        httpx.Client(base_url=base_url, follow_redirects=False, timeout=20) as http,
    ):
        yield http, settings


def wait_for_mails(settings: Settings, count: int, timeout: float = 10) -> list:
    """The outbox once it holds `count` mails (they are written after the answer)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mails(settings)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return mails(settings)


def subscribe_and_confirm(http, settings, email: str, topics: list[str]) -> dict[str, str]:
    before = len(mails(settings))
    assert http.post("/subscribe", data={"email": email, "topics": topics}).status_code == 200
    confirm = links_in(wait_for_mails(settings, before + 1)[-1])["confirm"]
    assert http.post(confirm).status_code == 200
    return links_in(wait_for_mails(settings, before + 2)[-1])


def body_of(page: str) -> str:
    """The page's main content, which must not tell known addresses from unknown ones."""
    return re.search(r"<main.*?</main>", page, flags=re.S).group(0)


def test_link_form_answers_alike_and_mails_only_known_addresses(site, engine) -> None:
    http, settings = site
    subscribe_and_confirm(http, settings, "ada@example.org", ["optimization"])
    with Session(engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == "ada@example.org")).one()
        sub.confirmations_sent_count = 0  # the subscribe above counted one
        session.add(sub)
        session.commit()
    before = len(mails(settings))

    landing = http.get("/")
    assert 'action="/link"' in landing.text
    known = http.post("/link", data={"email": "ADA@example.org"})
    unknown = http.post("/link", data={"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert body_of(known.text) == body_of(unknown.text)
    assert "Check your inbox" in known.text

    found = wait_for_mails(settings, before + 1)
    assert len(found) == before + 1
    msg = found[-1]
    assert msg["To"] == "ada@example.org"
    assert msg["Subject"] == f"Your link to manage {settings.title}"
    assert subscriber(engine, "nobody@example.org") is None  # nothing recorded for strangers
    preferences = links_in(msg)["preferences"]
    page = http.get(preferences)
    assert page.status_code == 200 and "ada@example.org" in page.text
    assert subscriber(engine, "ada@example.org").status == "active"  # nothing changed


def test_link_mails_are_limited_per_address_and_per_client(site, engine) -> None:
    http, settings = site
    subscribe_and_confirm(http, settings, "lin@example.org", [])
    before = len(mails(settings))
    # The subscribe and its confirmation used one of the address's three mails of the day.
    answers = [http.post("/link", data={"email": "lin@example.org"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert len({body_of(a.text) for a in answers}) == 1
    found = wait_for_mails(settings, before + 2)
    assert len(found) == before + 2  # 3 a day in all, whatever sent them
    sub = subscriber(engine, "lin@example.org")
    assert sub.confirmations_sent_count == lifecycle.MAX_CONFIRMATIONS_PER_DAY
    assert sub.confirmations_sent_on == datetime.now(UTC).date().isoformat()
    # Per client: ten a window, four spent above (subscribing has a limiter of its own).
    codes = [http.post("/link", data={"email": f"x{i}@example.org"}).status_code for i in range(7)]
    assert codes[:6] == [200] * 6 and codes[6] == 429


def test_link_form_bad_address_says_what(site) -> None:
    http, _ = site
    resp = http.post("/link", data={"email": "not an address"})
    assert resp.status_code == 400
    assert "not a valid email address" in resp.text
    assert 'aria-invalid="true"' in resp.text and 'action="/link"' in resp.text


def test_suppressed_address_gets_no_link(site, engine) -> None:
    http, settings = site
    subscribe_and_confirm(http, settings, "bounce@example.org", [])
    with Session(engine) as session:
        lifecycle.suppress(session, "bounce@example.org", "bounce")
        session.commit()
    before = len(mails(settings))
    assert http.post("/link", data={"email": "bounce@example.org"}).status_code == 200
    assert len(wait_for_mails(settings, before + 1, timeout=1)) == before


def test_bad_and_unsubscribed_pages_offer_the_link_form(site) -> None:
    http, settings = site
    links = subscribe_and_confirm(http, settings, "kim@example.org", [])
    bad = http.get("/preferences/not-a-token")
    assert bad.status_code == 400 and 'action="/link"' in bad.text
    assert 'action="/link"' in http.get("/confirm/not-a-token").text
    done = http.post(links["unsubscribe"])
    assert 'action="/link"' in done.text


def test_subscribe_again_from_a_revisited_unsubscribe_link(site, engine) -> None:
    http, settings = site
    links = subscribe_and_confirm(
        http, settings, "rev@example.org", ["optimization", "learning-theory"]
    )
    assert http.post(links["unsubscribe"]).status_code == 200
    later = http.get(links["unsubscribe"])  # reopened days later
    assert "already unsubscribed" in later.text
    action = re.search(r'action="(/resubscribe/[^"]+)"', later.text).group(1)
    before = len(mails(settings))
    again = http.post(action)
    assert again.status_code == 200 and "Check your inbox" in again.text
    sub = subscriber(engine, "rev@example.org")
    assert sub.status == "pending"
    msg = wait_for_mails(settings, before + 1)[-1]
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "Optimization" in text and "Learning theory" in text  # the last topics, named
    assert http.post(links_in(msg)["confirm"]).status_code == 200
    with Session(engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == "rev@example.org")).one()
        assert sub.status == "active"
        assert sorted(lifecycle.topics_of(session, sub)) == ["learning-theory", "optimization"]
        consents = session.exec(
            select(ConsentRecord.action).where(ConsentRecord.subscriber_id == sub.id)
        ).all()
    assert consents.count("confirm") == 2  # consent recorded anew


# --- the Atom feed carries the papers -------------------------------------------------------


def _publish(engine, month: str, *, sent: bool = True) -> None:
    with Session(engine) as session:
        issue = build_sample_issue(session, month, papers=10)
        if sent:
            issue.status = IssueStatus.SENT
            issue.sent_at = datetime.fromisoformat(f"{month}-28T09:00:00+00:00")
        session.commit()


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _titles(fragment: str) -> list[str]:
    return [" ".join(_text(h).split()) for h in re.findall(r"<h3[^>]*>(.*?)</h3>", fragment, re.S)]


def test_atom_feed_entries_hold_their_papers_in_web_order(site, engine) -> None:
    http, settings = site
    _publish(engine, "2026-04")
    _publish(engine, "2026-05")
    _publish(engine, "2026-06", sent=False)
    first = http.get("/issues/feed.xml")
    assert first.status_code == 200
    feed = feedparser.parse(first.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert [e.link for e in feed.entries] == [
        f"{settings.base_url}/issues/2026-05",
        f"{settings.base_url}/issues/2026-04",
    ]
    with Session(engine) as session:
        for entry in feed.entries:
            month = entry.link.rsplit("/", 1)[1]
            issue = session.exec(select(Issue).where(Issue.month == month)).one()
            papers = session.exec(
                select(Paper)
                .join(IssuePaper, col(IssuePaper.paper_id) == col(Paper.id))
                .where(IssuePaper.issue_id == issue.id)
            ).all()
            assert len(papers) == 10
            content = entry.content[0].value
            text = " ".join(_text(content).split())
            for paper in papers:
                assert " ".join(paper.title.split()) in text
                assert " ".join(paper.summary.split()) in text
                assert (paper.authors[0] if paper.authors else "") in text
            linked = re.findall(r'<h3[^>]*><a href="([^"]+)"', content)
            assert len(linked) == 10 and all(u.startswith("http") for u in linked)
            web = http.get(f"/issues/{month}").text
            assert _titles(content) == _titles(web)  # the web version's order
            assert entry.updated == f"{month}-28T09:00:00Z"
    again = feedparser.parse(http.get("/issues/feed.xml").content)
    assert [(e.id, e.updated) for e in again.entries] == [(e.id, e.updated) for e in feed.entries]


# --- a second subscribe while pending -------------------------------------------------------


def test_second_subscribe_while_pending_confirms_the_newest_topics(site, engine) -> None:
    http, settings = site
    form = {"email": "pat@example.org", "topics": ["optimization", "learning-theory"]}
    assert http.post("/subscribe", data=form).status_code == 200
    first = wait_for_mails(settings, 1)[-1]
    first_text = first.get_body(preferencelist=("plain",)).get_content()
    assert "Optimization" in first_text and "replace" not in first_text
    form = {"email": "pat@example.org", "topics": ["transformers"]}
    assert http.post("/subscribe", data=form).status_code == 200
    second = wait_for_mails(settings, 2)[-1]
    text = second.get_body(preferencelist=("plain",)).get_content()
    assert "Transformers & sequence models" in text and "Optimization" not in text
    assert "replace those of the earlier request" in text
    html_part = second.get_body(preferencelist=("html",)).get_content()
    assert "replace those of the earlier request" in html_part
    # The first mail's link shows and confirms the topics as they are now.
    old_link = links_in(first)["confirm"]
    page = http.get(old_link)
    assert "Transformers &amp; sequence models" in page.text and "Optimization" not in page.text
    assert http.post(old_link).status_code == 200
    with Session(engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == "pat@example.org")).one()
        assert sub.status == "active"
        assert lifecycle.topics_of(session, sub) == ["transformers"]


# --- a welcome that helps -------------------------------------------------------------------


def _first_run_after(now: datetime) -> datetime:
    """The default schedule, 09:00 UTC on the 1st, worked out by hand."""
    this_month = now.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    if now < this_month:
        return this_month
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return this_month.replace(year=year, month=month)


def test_welcome_mail_links_the_latest_issue_and_says_when_the_next_comes(site, engine) -> None:
    http, settings = site
    _publish(engine, "2026-04")
    _publish(engine, "2026-05")
    assert settings.schedule == "0 9 1 * *"
    subscribe_and_confirm(http, settings, "new@example.org", ["optimization"])
    welcome = mails(settings)[-1]
    assert welcome["Subject"] == f"Welcome to {settings.title}"
    due = _first_run_after(datetime.now(UTC))
    expected = f"{due.day} {due:%B %Y}"
    for kind in ("plain", "html"):
        body = welcome.get_body(preferencelist=(kind,)).get_content()
        assert f"{settings.base_url}/issues/2026-05" in body
        assert "May 2026" in body
        assert "next issue is due on" in body and expected in body
        assert "Optimization" in body
    assert http.get("/issues/2026-05").status_code == 200  # the link works


def test_next_issue_due_prefers_an_earlier_scheduled_issue(engine, settings) -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with Session(engine) as session:
        assert audience.next_issue_due(session, settings, now) == datetime(
            2027, 1, 1, 9, 0, tzinfo=UTC
        )
        issue = build_sample_issue(session, "2026-11", papers=3)
        issue.scheduled_for = datetime(2026, 12, 15, 8, 30, tzinfo=UTC)
        session.commit()
        due = audience.next_issue_due(session, settings, now)
        assert due is not None and due.astimezone(UTC) == datetime(2026, 12, 15, 8, 30, tzinfo=UTC)
        news = audience.welcome_news(session, settings, now)
        assert news.next_date == "15 December 2026" and news.latest_url == ""
        issue.status = IssueStatus.SENT  # a scheduled issue already sent is no longer ahead
        session.commit()
        news = audience.welcome_news(session, settings, now)
        assert news.next_date == "1 January 2027"
        assert news.latest_url == f"{settings.base_url}/issues/2026-11"


def test_unsubscribed_reader_gets_a_link_and_subscribes_again_from_preferences(
    site, engine
) -> None:
    http, settings = site
    links = subscribe_and_confirm(http, settings, "back@example.org", ["optimization"])
    assert http.post(links["unsubscribe"]).status_code == 200
    before = len(mails(settings))
    assert http.post("/link", data={"email": "back@example.org"}).status_code == 200
    page = http.get(links_in(wait_for_mails(settings, before + 1)[-1])["preferences"])
    assert "Save topics" not in page.text  # review 2.16: no topic form for the unsubscribed
    action = re.search(r'action="(/resubscribe/[^"]+)"', page.text).group(1)
    assert http.post(action).status_code == 200
    assert subscriber(engine, "back@example.org").status == "pending"
    msg = wait_for_mails(settings, before + 2)[-1]
    assert "Optimization" in msg.get_body(preferencelist=("plain",)).get_content()
