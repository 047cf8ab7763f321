"""The whole public journey in Debian's Chromium through Playwright, against real uvicorn:
subscribe -> confirmation read in /outbox -> confirm -> change topics -> preview -> unsubscribe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session, select

from newsletter.models import IssueStatus
from newsletter.settings import load_settings
from newsletter.testing.live_server import free_port, live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from subscribers import lifecycle
from subscribers.models import Subscriber

pytestmark = pytest.mark.browser


@pytest.fixture
def site(db_url, tmp_path, engine) -> Iterator[tuple[str, object]]:
    """A running site whose links (base URL) point at itself, with two sent issues."""
    port = free_port()
    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="browser-test-secret-0123456789abcdef",
        postal_address="1 Test Street, Testville",
        _env_file=None,
    )
    with Session(engine) as session:
        for month in ("2026-04", "2026-05"):
            issue = build_sample_issue(session, month, papers=10)
            issue.status = IssueStatus.SENT
            issue.sent_at = datetime.fromisoformat(f"{month}-28T09:00:00").replace(tzinfo=UTC)
        session.commit()
    with live_server(create_app(settings, bind_host="127.0.0.1"), port=port) as base_url:
        yield base_url, engine


def status_of(engine, email: str) -> tuple[str, list[str]]:
    with Session(engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        return sub.status, lifecycle.topics_of(session, sub)


def csp_violations(page: Page) -> list[str]:
    """CSP reports from our own pages. Email documents inside the iframes are left out: their
    CSP blocks remote stylesheets (web fonts) on purpose, which the console reports."""
    found: list[str] = []

    def check(msg) -> None:  # type: ignore[no-untyped-def]
        url = msg.location.get("url", "")
        if "Content Security Policy" in msg.text and not (
            "/preview/email" in url or url.endswith("/html")
        ):
            found.append(f"{url}: {msg.text}")

    page.on("console", check)
    return found


def test_subscribe_confirm_choose_topics_preview_unsubscribe(browser: Browser, site) -> None:
    base_url, engine = site
    page = browser.new_page()
    violations = csp_violations(page)

    page.goto(base_url + "/")
    page.get_by_label("Email address").fill("grace@example.org")
    page.get_by_label("Transformers & sequence models").check()
    page.get_by_label("Optimization").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert status_of(engine, "grace@example.org") == ("pending", ["optimization", "transformers"])

    # The confirmation, read in the local outbox viewer.
    page.goto(base_url + "/outbox")
    page.get_by_role("link", name="Please confirm your subscription").first.click()
    expect(page.locator("iframe")).to_be_visible()
    page.locator("ul.links a[href*='/confirm/']").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    assert status_of(engine, "grace@example.org")[0] == "pending"  # opening changes nothing
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're subscribed")
    assert status_of(engine, "grace@example.org")[0] == "active"

    # Change topics: graph learning instead of transformers.
    page.get_by_role("link", name="Choose your topics").click()
    expect(page.get_by_label("Transformers & sequence models")).to_be_checked()
    page.get_by_label("Transformers & sequence models").uncheck()
    page.get_by_label("Graph & geometric learning").check()
    page.get_by_role("button", name="Save topics").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert status_of(engine, "grace@example.org")[1] == ["graph-learning", "optimization"]
    preferences_url = page.url

    # Preview the latest issue (first in the archive) with those topics: they come first.
    page.goto(base_url + "/issues")
    latest = page.locator("ol.issues a").first
    expect(latest).to_have_text("May 2026")
    month = latest.get_attribute("href").rsplit("/", 1)[1]
    page.goto(f"{base_url}/issues/{month}/preview")
    page.get_by_label("Optimization").check()
    page.get_by_label("Graph & geometric learning").check()
    page.get_by_role("button", name="Show preview").click()
    frame = page.frame_locator("#email-frame")
    headings = frame.locator("h2")
    expect(headings.first).to_have_text("Optimization", ignore_case=True)
    expect(headings.nth(1)).to_have_text("Graph & geometric learning", ignore_case=True)
    expect(headings.nth(2)).to_have_text("Also this month", ignore_case=True)
    iframe = page.locator("#email-frame")
    desktop = iframe.bounding_box()["width"]
    page.get_by_text("Mobile", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#email-frame').getBoundingClientRect().width <= 380"
    )
    assert iframe.bounding_box()["width"] < desktop

    # Leave, with the button on the unsubscribe page (the page alone changes nothing).
    page.goto(preferences_url)
    page.get_by_role("link", name="Unsubscribe").click()
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    assert status_of(engine, "grace@example.org")[0] == "active"
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're unsubscribed")
    assert status_of(engine, "grace@example.org")[0] == "unsubscribed"
    assert violations == []
    page.close()


def test_one_click_post_without_cookies(browser: Browser, site) -> None:
    """What a mailbox provider does with List-Unsubscribe-Post: a bare POST, no cookie."""
    base_url, engine = site
    page = browser.new_page()
    page.goto(base_url + "/")
    page.get_by_label("Email address").fill("linus@example.org")
    page.get_by_role("button", name="Subscribe").click()
    # Wait for the answer: leaving before it lands races the confirmation's .eml.
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    page.goto(base_url + "/outbox")
    page.get_by_role("link", name="Please confirm your subscription").first.click()
    page.locator("ul.links a[href*='/confirm/']").click()
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're subscribed")
    page.goto(base_url + "/outbox")
    page.get_by_role("link", name="Welcome").first.click()
    unsubscribe_url = page.locator("ul.links a[href*='/unsubscribe/']").get_attribute("href")
    page.close()

    context = browser.new_context()
    assert context.cookies() == []
    for _ in range(2):  # idempotent
        resp = context.request.post(
            unsubscribe_url,
            form={"List-Unsubscribe": "One-Click"},
            max_redirects=0,
        )
        assert resp.status == 200
        assert "set-cookie" not in resp.headers and "location" not in resp.headers
    multipart = context.request.post(
        unsubscribe_url, multipart={"List-Unsubscribe": "One-Click"}, max_redirects=0
    )
    assert multipart.status == 200
    assert status_of(engine, "linus@example.org")[0] == "unsubscribed"
    context.close()


def test_phone_reader_gets_back_in_and_subscribes_again(browser: Browser, site, axe_source) -> None:
    """At 375 px: landing -> "email me my link" -> the mail in /outbox -> preferences; then
    unsubscribe -> subscribe again (a fresh confirmation). axe-core on every new page."""
    from newsletter.testing.accessibility import serious_violations

    base_url, engine = site
    with Session(engine) as session:
        lifecycle.add_confirmed(
            session,
            "ida@example.org",
            ["optimization"],
            known_topics={"optimization"},
            consent_text_version="test",
            source="cli",
        )
        session.commit()
    context = browser.new_context(bypass_csp=True, viewport={"width": 375, "height": 800})
    page = context.new_page()
    problems: list[str] = []

    def check(name: str) -> None:
        problems.extend(f"{name}: {v}" for v in serious_violations(page, axe_source))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{name} scrolls sideways ({width} px)"

    page.goto(base_url + "/")
    check("landing")
    page.get_by_label("Your subscribed address").fill("ida@example.org")
    page.get_by_role("button", name="Email me my link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    check("link sent")
    page.goto(base_url + "/outbox")
    page.get_by_role("link", name="Your link to manage").first.click()
    page.locator("ul.links a[href*='/preferences/']").click()
    expect(page.get_by_label("Optimization")).to_be_checked()
    assert "ida@example.org" in page.content()
    assert status_of(engine, "ida@example.org") == ("active", ["optimization"])

    page.get_by_role("link", name="Unsubscribe").click()
    unsubscribe_url = page.url
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're unsubscribed")
    check("unsubscribed")
    page.goto(unsubscribe_url)  # reopened later
    expect(page.get_by_text("already unsubscribed")).to_be_visible()
    check("unsubscribe revisited")
    page.get_by_role("button", name="Subscribe again").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert status_of(engine, "ida@example.org") == ("pending", ["optimization"])
    page.goto(base_url + "/outbox")
    page.get_by_role("link", name="Please confirm your subscription").first.click()
    page.locator("ul.links a[href*='/confirm/']").click()
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're subscribed")
    assert status_of(engine, "ida@example.org") == ("active", ["optimization"])

    page.goto(base_url + "/preferences/not-a-real-token")
    expect(page.get_by_role("button", name="Email me my link")).to_be_visible()
    check("bad link")
    assert problems == []
    context.close()


def test_phone_start_here_page_and_landing(browser: Browser, site, axe_source) -> None:
    """At 375 px: the landing's "foundations first" block leads to /start-here, which lists
    the editors' papers in their order; axe-core 0 serious/critical on both."""
    from newsletter.models import Paper, StartHereItem
    from newsletter.testing.accessibility import serious_violations

    base_url, engine = site
    with Session(engine) as session:
        papers = session.exec(select(Paper).order_by(Paper.id)).all()[:4]
        for position, paper in enumerate(papers):
            why = f"Read this {position + 1}: it sets up the rest."
            session.add(StartHereItem(paper_id=paper.id, position=position, why=why))
        titles = [p.title for p in papers]
        session.commit()
    context = browser.new_context(bypass_csp=True, viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.goto(base_url + "/")
    assert serious_violations(page, axe_source) == []
    expect(page.get_by_role("heading", name="Want the foundations first?")).to_be_visible()
    page.get_by_role("link", name='The whole "start here" reading list').click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Start here")
    expect(page.locator("ol.start-here > li > a")).to_have_text(titles)
    assert serious_violations(page, axe_source) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()
