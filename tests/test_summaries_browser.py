"""Drafted summaries on the desk in Debian's Chromium, against real uvicorn and the fake
OpenAI-compatible server: a draft is marked "drafted by MODEL — not reviewed", the preview
shows the abstract's opening until an editor accepts it, then the accepted words; the draft
page at 375 px has no sideways scrolling and no serious axe-core violation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import Session, select

from newsletter.db import session_scope
from newsletter.issues import compose_issue
from newsletter.models import Paper
from newsletter.papers.drafting import draft_papers
from newsletter.papers.store import import_paths
from newsletter.papers.summaries import abstract_excerpt
from newsletter.settings import load_settings
from newsletter.testing.accessibility import serious_violations
from newsletter.testing.fake_llm import FakeLLM, house_style_summary
from newsletter.testing.live_server import free_port, live_server
from newsletter.web.app import create_app

pytestmark = pytest.mark.browser
ARXIV = Path(__file__).parent / "data" / "papers" / "arxiv_api_answer.xml"
MONTH = "2026-06"
TOKEN = "summaries-browser-admin-token-0123456789"
NATGRAD = "Thermodynamic Natural Gradient Descent"


@pytest.fixture
def drafted_site(db_url, tmp_path, engine) -> Iterator[tuple[str, object, FakeLLM]]:
    port = free_port()
    with FakeLLM() as fake:
        settings = load_settings(
            var_dir=tmp_path / "var",
            database_url=db_url,
            base_url=f"http://127.0.0.1:{port}",
            secret_key="summaries-browser-secret-0123456789abcdef",
            postal_address="1 Test Street, Testville",
            admin_token=TOKEN,
            llm_summaries="review",
            llm_base_url=fake.base_url,
            llm_model="fake-model-1",
            _env_file=None,
        )
        (report,) = import_paths(engine, [ARXIV], "feed")
        assert report.error is None
        assert draft_papers(engine, settings, month=MONTH).drafted == 3
        with session_scope(engine) as session:
            compose_issue(session, MONTH, settings.title)
        with live_server(create_app(settings, bind_host="127.0.0.1"), port=port) as base_url:
            yield base_url, engine, fake


def test_a_drafted_summary_is_marked_accepted_then_in_the_preview(
    browser: Browser, drafted_site, request
) -> None:
    base_url, engine, fake = drafted_site
    with Session(engine) as session:
        natgrad = session.exec(select(Paper).where(Paper.title == NATGRAD)).one()
    drafted = house_style_summary(NATGRAD)
    excerpt = abstract_excerpt(natgrad.abstract)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)

    page.goto(base_url + "/admin/sign-in")
    page.get_by_text("Sign in with the admin token").click()
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Issues")
    page.get_by_role("link", name="June 2026").click()

    card = page.locator(f"#paper-{natgrad.id}")
    mark = card.locator(f"#draft-{natgrad.id}")
    expect(mark).to_contain_text("drafted by fake-model-1 — not reviewed")
    expect(mark.locator("blockquote")).to_have_text(drafted)
    expect(page.locator("#unreviewed-drafts")).to_contain_text("3 drafted summaries not reviewed")

    # Before review the email shows the abstract's opening, never the draft.
    page.get_by_role("link", name="Preview").click()
    frame = page.frame_locator("#frame-desktop")
    expect(frame.get_by_text(excerpt[:60])).to_be_visible()
    expect(frame.get_by_text(drafted[:60])).to_have_count(0)

    page.get_by_role("link", name="Back to the issue").click()
    page.get_by_role("button", name=f"Accept the drafted summary: {NATGRAD}").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Summary accepted: it is the paper's summary now."
    )
    expect(page.locator(f"#draft-{natgrad.id}")).to_have_count(0)
    expect(page.get_by_label("Summary").first).to_be_visible()
    expect(page.locator("#unreviewed-drafts")).to_contain_text("2 drafted summaries not reviewed")

    page.get_by_role("link", name="Preview").click()
    expect(frame.get_by_text(drafted[:60])).to_be_visible()
    assert len(fake.requests) == 3  # pages and the preview asked the model nothing

    axe_source = request.getfixturevalue("axe_source")
    small = browser.new_context(
        bypass_csp=True,
        viewport={"width": 375, "height": 800},
        storage_state=context.storage_state(),
    ).new_page()
    small.goto(f"{base_url}/admin/issues/{MONTH}")
    assert small.evaluate("document.documentElement.scrollWidth") <= 375
    assert serious_violations(small, axe_source, frames=False) == []
    context.close()
