"""The editor's desk in Debian's Chromium against real uvicorn, a real clock and the outbox:
sign in with the mailed link, edit the note and a summary, drop a paper, preview two topic
sets, send a test, schedule, watch the clock send it, read the report; then every desk page
at 375 px: no sideways scrolling and no serious or critical axe-core violation."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import Session, select
from test_browser import csp_violations

from newsletter.db import session_scope
from newsletter.delivery import drain, new_worker_id
from newsletter.models import AuditEntry, Issue, IssuePaper, Paper
from newsletter.scheduler import build_clock
from newsletter.settings import load_settings
from newsletter.testing.accessibility import serious_violations
from newsletter.testing.live_server import free_port, live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from subscribers import lifecycle

pytestmark = pytest.mark.browser
# Screenshots for people to look at (the draft, its history, the phone layouts).
ARTEFACTS = Path(__file__).parent.parent / "var" / "test-artefacts"
ARTEFACTS.mkdir(parents=True, exist_ok=True)
EDITOR = "editor@example.org"
MONTH = "2026-05"
READERS = 8


@pytest.fixture
def desk_site(db_url, tmp_path, engine) -> Iterator[tuple[str, object, object]]:
    """The site, a draft issue, readers, and the clock (plus a worker on PostgreSQL)."""
    port = free_port()
    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="desk-browser-secret-0123456789abcdef",
        postal_address="1 Test Street, Testville",
        editors=EDITOR,
        schedule_check_seconds=1,
        batch_size=2,
        send_rate=6,  # slow enough to watch the progress move
        _env_file=None,
    )
    with session_scope(engine) as session:
        build_sample_issue(session, MONTH, papers=8)
        for i in range(READERS):
            lifecycle.add_confirmed(
                session,
                f"reader{i}@example.org",
                ["optimization"] if i % 2 else [],
                known_topics={"optimization"},
                consent_text_version="test",
                source="cli",
            )
    stop = threading.Event()
    clock = build_clock(engine, settings, stop)
    threads = [threading.Thread(target=clock.start, daemon=True)]
    if not settings.is_sqlite:  # with PostgreSQL the clock plans and workers deliver

        def work() -> None:
            worker_id = new_worker_id()
            while not stop.is_set():
                if not drain(engine, settings, worker_id=worker_id, stop=stop):
                    stop.wait(0.2)

        threads.append(threading.Thread(target=work, daemon=True))
    for t in threads:
        t.start()
    try:
        with live_server(create_app(settings, bind_host="127.0.0.1"), port=port) as base_url:
            yield base_url, engine, settings
    finally:
        stop.set()
        clock.shutdown(wait=False)
        for t in threads:
            t.join(10)


def newest_mail(settings, to: str):
    for path in sorted(Path(settings.outbox_dir).glob("*.eml"), reverse=True):
        with path.open("rb") as fh:
            msg = BytesParser(policy=policy.default).parse(fh)
        if msg["To"] == to:
            return msg
    raise AssertionError(f"no mail to {to}")


def outbox_subjects(settings) -> list[tuple[str, str]]:
    found = []
    for path in sorted(Path(settings.outbox_dir).glob("*.eml")):
        with path.open("rb") as fh:
            msg = BytesParser(policy=policy.default).parse(fh)
        found.append((msg["To"], msg["Subject"]))
    return found


def sign_in_by_mail(page, base_url: str) -> None:
    """Ask for a link, read it in the local outbox, use it."""
    page.goto(base_url + "/admin/issues")
    expect(page).to_have_url(f"{base_url}/admin/sign-in?next=%2Fadmin%2Fissues")
    page.get_by_label("Editor's email address").fill(EDITOR)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    page.goto(base_url + "/outbox?q=sign+in")
    page.get_by_role("link", name="Sign in to the desk").first.click()
    page.locator("ul.links a[href*='/admin/sign-in/']").click()
    page.get_by_role("button", name="Sign in to the desk").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Issues")


def test_editor_walks_the_desk(browser: Browser, desk_site, request) -> None:
    base_url, engine, settings = desk_site
    context = browser.new_context()
    page = context.new_page()
    # Two cores shared with the rest of the suite: a cold MJML compile or a PostgreSQL
    # round trip may take longer than Playwright's default 5 s.
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    violations = csp_violations(page)

    sign_in_by_mail(page, base_url)

    # The draft is one document: subject, note and two summaries, saved as you go (one
    # field's save never drops another's edit); after a reload everything is kept.
    page.get_by_role("link", name="May 2026").click()
    saved = page.locator("#save-state")
    page.get_by_label("Subject line").fill("May 2026: optimizers at work")
    page.get_by_role("textbox", name="Editor's note").fill(
        "Welcome to **May**: a busy month for optimizers."
    )
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        listed = session.exec(
            select(Paper)
            .join(IssuePaper, IssuePaper.paper_id == Paper.id)
            .where(IssuePaper.issue_id == issue.id)
            .order_by(Paper.id)
        ).all()
    first, second, victim = listed[0], listed[1], listed[6]
    card = page.locator(f"#paper-{first.id}")
    card.get_by_label("Summary").fill("A summary an editor rewrote for practitioners.")
    page.locator(f"#paper-{second.id}").get_by_label("Summary").fill("Second summary, edited.")
    expect(saved).to_have_text(re.compile(r"^Saved · revision \d+$"))
    page.screenshot(path=str(ARTEFACTS / "draft-desktop.png"), full_page=True)
    page.reload()
    expect(page.get_by_label("Subject line")).to_have_value("May 2026: optimizers at work")
    expect(page.get_by_role("textbox", name="Editor's note")).to_have_value(
        "Welcome to **May**: a busy month for optimizers."
    )
    expect(card.get_by_label("Summary")).to_have_value(
        "A summary an editor rewrote for practitioners."
    )
    expect(page.locator(f"#paper-{second.id}").get_by_label("Summary")).to_have_value(
        "Second summary, edited."
    )
    # Drop a paper (an unsaved edit elsewhere goes with the same form, never lost), undo it,
    # then drop it for good.
    page.get_by_role("button", name=f"Drop: {victim.title}").click()
    expect(page.get_by_role("status").first).to_have_text("Paper dropped from this issue.")
    expect(page.locator(f"#paper-{victim.id}")).to_have_count(0)
    page.get_by_role("button", name=re.compile("^Undo: put the paper back")).click()
    expect(page.locator(f"#paper-{victim.id}")).to_have_count(1)
    page.get_by_role("button", name=f"Drop: {victim.title}").click()
    expect(page.locator(f"#paper-{victim.id}")).to_have_count(0)
    # The history lists each revision; an older one can be compared and restored.
    page.get_by_role("link", name="History").click()
    expect(page.locator("#revisions")).to_contain_text("paper dropped")
    page.screenshot(path=str(ARTEFACTS / "history-desktop.png"), full_page=True)
    page.get_by_role("button", name="Show the difference").click()
    expect(page.locator("#diff")).to_contain_text("papers dropped")
    page.get_by_role("link", name="Back to the issue").click()

    # Preview two topic sets, desktop and mobile side by side.
    page.get_by_role("link", name="Preview").click()
    page.get_by_label("Optimization").check()
    page.get_by_role("button", name="Show preview").click()
    desktop = page.frame_locator("#frame-desktop")
    expect(desktop.get_by_text("a busy month for optimizers")).to_be_visible()
    expect(desktop.get_by_text("A summary an editor rewrote for practitioners.")).to_be_visible()
    expect(desktop.locator("h2").first).to_have_text("Optimization", ignore_case=True)
    mobile_box = page.locator("#frame-mobile").bounding_box()
    assert mobile_box["width"] <= 376 < page.locator("#frame-desktop").bounding_box()["width"]
    expect(page.locator("tr.current")).to_contain_text("Optimization")
    # The text version beside the HTML, for the same topic set.
    expect(page.locator("#text-version")).to_contain_text(
        "A summary an editor rewrote for practitioners."
    )
    page.get_by_label("Optimization").uncheck()
    page.get_by_label("Transformers & sequence models").check()
    page.get_by_role("button", name="Show preview").click()
    expect(desktop.locator("h2").first).to_have_text(
        "Transformers & sequence models", ignore_case=True
    )
    expect(page.frame_locator("#frame-mobile").get_by_text(victim.title)).to_have_count(0)

    # A test copy to the editor.
    page.get_by_role("link", name="Back to the issue").click()
    page.get_by_role("button", name="Send test copy").click()
    expect(page.get_by_role("status").first).to_have_text("Test copy sent.")
    tested = page.locator("#test-state").inner_text()
    revision = int(tested.split()[1])
    tests = [s for to, s in outbox_subjects(settings) if to == EDITOR and s.startswith("[TEST")]
    assert tests == [f"[TEST r{revision}] May 2026: optimizers at work"]

    # Schedule it for later: a confirmation page first, with the recipient count.
    later = datetime.now(UTC) + timedelta(hours=3)
    page.get_by_label("Send at (UTC)").fill(later.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Schedule May 2026?")
    expect(page.locator('[data-field="recipients"]')).to_have_text(str(READERS))
    expect(page.locator("time[data-local-time]")).to_contain_text("your time")
    page.get_by_role("button", name=f"Schedule revision {revision} for").click()
    expect(page.get_by_role("status").first).to_have_text("Scheduled.")
    # An edit of the subject withdraws it: banner, the clock (1 s checks) sends nothing.
    page.get_by_label("Subject line").fill("May 2026, edited after scheduling")
    expect(saved).to_have_text(re.compile(r"^Saved · revision \d+$"))
    page.reload()
    expect(page.locator("#withdrawn")).to_contain_text("Approval withdrawn")
    expect(page.locator("#withdrawn")).to_contain_text("subject changed")
    expect(page.locator("#changed-since-test")).to_contain_text("subject changed")
    page.wait_for_timeout(2500)
    assert [to for to, _ in outbox_subjects(settings) if to.startswith("reader")] == []

    # A test copy to a colleague (not an editor) as an Optimization reader gets it; its
    # "view in your browser" link opens the draft with no session at all.
    page.get_by_label("Send a test copy to").fill("colleague@example.net")
    page.get_by_label("As received by").select_option(value="optimization")
    page.get_by_role("button", name="Send test copy").click()
    expect(page.get_by_role("status").first).to_have_text("Test copy sent.")
    copy = newest_mail(settings, "colleague@example.net")
    html = copy.get_body(preferencelist=("html",)).get_content()
    link = re.search(r'href="([^"]+/preview\?[^"]*key=[^"]+)"', html).group(1)
    stranger = browser.new_context()
    outside = stranger.new_page()
    outside.goto(link.replace("&amp;", "&"))
    expect(outside.locator("#test-copy-note")).to_contain_text("read-only")
    expect(outside.frame_locator("#email-frame").locator("h2").first).to_have_text(
        "Optimization", ignore_case=True
    )
    stranger.close()

    # A confirmation left open while the issue changes in another tab: 409, nothing sent.
    page.get_by_role("button", name="Approve and send now…").click()
    expect(page.locator('[data-field="recipients"]')).to_have_text(str(READERS))
    other = context.new_page()
    other.goto(f"{base_url}/admin/issues/{MONTH}")
    other.get_by_label("Subject line").fill("May 2026, final")
    other.get_by_role("button", name="Save all changes").click()
    expect(other.get_by_role("status").first).to_have_text("Changes saved.")
    other.close()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name=re.compile("^Send revision")).click()
    assert answer.value.status == 409
    expect(page.get_by_role("alert").first).to_contain_text("changed since you looked")

    # Test the final revision, approve it with the confirmation, and watch it go.
    page.goto(f"{base_url}/admin/issues/{MONTH}")
    page.get_by_role("button", name="Send test copy").click()
    expect(page.get_by_role("status").first).to_have_text("Test copy sent.")
    page.get_by_role("button", name="Approve and send now…").click()
    expect(page.locator('[data-field="untested"]')).to_have_count(0)
    page.get_by_role("button", name=f"Send revision {revision + 2} to {READERS} people").click()
    expect(page.locator('#progress [data-field="status"]')).to_have_text("sent", timeout=60_000)
    expect(page.locator('#progress [data-field="sent"]')).to_have_text(str(READERS))
    readers = [to for to, subject in outbox_subjects(settings) if to.startswith("reader")]
    assert len(readers) == READERS

    # The report.
    page.get_by_role("link", name="Report").click()
    counts = page.locator("#delivery-counts")
    expect(counts.locator("div", has_text="sent").first.locator("dd")).to_have_text(str(READERS))
    expect(page.locator("#feedback-counts")).to_contain_text("bounce")

    # The public web version of the sent issue carries the editor's note too.
    page.goto(f"{base_url}/issues/{MONTH}")
    expect(page.get_by_label("A note from the editor")).to_contain_text(
        "a busy month for optimizers"
    )
    page.go_back()

    # The audit log names every action.
    page.get_by_role("link", name="Audit log").click()
    for action in (
        "desk.sign_in",
        "issue.note",
        "paper.edit",
        "issue.drop_paper",
        "issue.test",
        "issue.schedule",
        "issue.approval_withdrawn",
        "issue.approve",
    ):
        expect(page.locator("#audit")).to_contain_text(action)
    with Session(engine) as session:
        assert {e.actor for e in session.exec(select(AuditEntry)).all()} == {EDITOR}
    assert violations == []

    # Every page at 375 px: nothing scrolls sideways, axe-core finds nothing serious.
    # The pages are the same whatever the database, so once is enough.
    if not settings.is_sqlite:
        context.close()
        return
    axe_source = request.getfixturevalue("axe_source")
    state = context.storage_state()
    checker = browser.new_context(
        bypass_csp=True, viewport={"width": 375, "height": 800}, storage_state=state
    )
    small = checker.new_page()
    sub_id = None
    with Session(engine) as session:  # a "start here" list, so its page shows its forms
        from newsletter.models import StartHereItem

        for position, paper in enumerate(session.exec(select(Paper)).all()[:2]):
            session.add(StartHereItem(paper_id=paper.id, position=position, why="A classic."))
        session.commit()
    pages = [
        "/admin/issues",
        f"/admin/issues/{MONTH}",
        f"/admin/issues/{MONTH}/preview?topics=optimization",
        f"/admin/issues/{MONTH}/report",
        f"/admin/issues/{MONTH}/history",
        "/admin/papers",
        "/admin/subscribers",
        "/admin/audit",
        "/admin/start-here",
    ]
    problems = []
    for path in pages:
        small.goto(base_url + path)
        if path == "/admin/subscribers":
            sub_id = small.locator("#subscribers a").first.get_attribute("href")
        name = path.strip("/").replace("/", "-").split("?")[0]
        small.screenshot(path=str(ARTEFACTS / f"phone-{name}.png"), full_page=True)
        width = small.evaluate("document.documentElement.scrollWidth")
        if width > 375:
            problems.append(f"{path}: {width} px wide")
        problems += [f"{path}: {v}" for v in serious_violations(small, axe_source, frames=False)]
    small.goto(base_url + sub_id)
    problems += [f"{sub_id}: {v}" for v in serious_violations(small, axe_source, frames=False)]
    anonymous = browser.new_context(bypass_csp=True, viewport={"width": 375, "height": 800})
    signin = anonymous.new_page()
    signin.goto(base_url + "/admin/sign-in")
    problems += [f"sign-in: {v}" for v in serious_violations(signin, axe_source, frames=False)]
    assert problems == []
    for c in (checker, anonymous, context):
        c.close()
