"""Issue 22 in Chromium: drag a paper into another section and a section above another
(SortableJS), at 1280 px; the preview and a sent test copy follow the editor's order; the
draft page at 375 px scrolls no sideways."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import Session, select
from test_desk_browser import (  # noqa: F401 (desk_site: the fixture)
    ARTEFACTS,
    EDITOR,
    desk_site,
    newest_mail,
    sign_in_by_mail,
)

from newsletter.issues import load_issue_contents
from newsletter.models import Issue, Topic

pytestmark = pytest.mark.browser
MONTH = "2026-05"


def _sections(engine) -> list[tuple[str, list[int]]]:
    with Session(engine) as session:
        contents = load_issue_contents(session, session.exec(select(Issue)).one())
        out: dict[str, list[int]] = {}
        for e in contents.entries:
            out.setdefault(e.section, []).append(e.paper.id)
        return list(out.items())


def drag(page, source: str, target: str) -> None:
    """Drag `source` (a handle) onto the top edge of `target`, as a mouse does."""
    page.locator(source).drag_to(page.locator(target), target_position={"x": 12, "y": 3})


def _saved_after(page, revision: int) -> int:
    """Wait for the page to say it saved a revision newer than `revision`; return it."""
    page.wait_for_function(
        "r => { const m = /^Saved · revision (\\d+)$/.exec("
        "document.getElementById('save-state').textContent); return m && Number(m[1]) > r; }",
        arg=revision,
    )
    return int(page.locator("#save-state").inner_text().rsplit(" ", 1)[1])


def test_drag_papers_and_sections_and_the_email_follows(browser: Browser, desk_site) -> None:  # noqa: F811
    base_url, engine, settings = desk_site
    # Tall enough that both ends of a drag are on screen (a person's page would scroll).
    context = browser.new_context(viewport={"width": 1280, "height": 6000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    sign_in_by_mail(page, base_url)
    page.goto(f"{base_url}/admin/issues/{MONTH}")
    revision = int(page.locator("#draft").get_attribute("data-revision"))
    before = _sections(engine)
    (first_section, first_papers), (second_section, second_papers) = before[0], before[1]
    moving = first_papers[0]
    # A paper by its handle onto the first paper of the second section.
    drag(page, f"#paper-{moving} .drag-handle", f"#paper-{second_papers[0]} h4")
    revision = after_paper_drag = _saved_after(page, revision)
    after = dict(_sections(engine))
    assert moving in after[second_section] and moving not in after.get(first_section, [])
    # The last section by its handle above the first one.
    last_section = before[-1][0]
    drag(page, f"#section-{last_section} .section-handle", f"#section-{first_section} h3")
    revision = _saved_after(page, revision)
    order = [s for s, _ in _sections(engine)]
    assert order[0] == last_section, order
    page.screenshot(path=str(ARTEFACTS / "draft-after-drag-desktop.png"), full_page=True)
    with Session(engine) as session:
        names = {t.slug: t.name for t in session.exec(select(Topic)).all()}
    # The preview shows the sections in the editor's order.
    page.get_by_role("link", name="Preview").click()
    frame = page.frame_locator("#frame-desktop")
    expect(frame.locator("h2").first).to_have_text(names[last_section], ignore_case=True)
    # So does a test copy.
    page.get_by_role("link", name="Back to the issue").click()
    page.get_by_role("button", name="Send test copy").click()
    expect(page.get_by_role("status").first).to_have_text("Test copy sent.")
    text = newest_mail(settings, EDITOR).get_body(preferencelist=("plain",)).get_content()
    positions = [
        text.upper().find(names[s].upper()) for s in order if names[s].upper() in text.upper()
    ]
    assert positions == sorted(positions), (order, positions)
    # Keyboard alternative: "Section down" on the first section moves it.
    page.get_by_role("button", name=f"Move section down: {names[last_section]}").click()
    expect(page.locator("#sections > li.section").first).not_to_have_attribute(
        "data-section", last_section
    )
    # Restore the revision from before the section was dragged: the sections' order is back
    # (the moved paper stays moved), as a new revision.
    page.get_by_role("link", name="History").click()
    page.get_by_role("button", name=f"Restore revision {after_paper_drag}").click()
    expect(page.get_by_role("status").first).to_have_text("Revision restored (as a new revision).")
    restored = _sections(engine)
    expected = [s for s, ids in before if s != first_section or len(ids) > 1]
    assert [s for s, _ in restored] == expected and moving in dict(restored)[second_section]
    state = context.storage_state()
    context.close()
    # The draft at 375 px: no sideways scrolling, buttons big enough to tap.
    phone = browser.new_context(viewport={"width": 375, "height": 800}, storage_state=state)
    small = phone.new_page()
    small.goto(f"{base_url}/admin/issues/{MONTH}")
    small.screenshot(path=str(ARTEFACTS / "phone-draft.png"), full_page=True)
    assert small.evaluate("document.documentElement.scrollWidth") <= 375
    heights = small.eval_on_selector_all(
        "#draft button", "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 44, heights
    phone.close()
