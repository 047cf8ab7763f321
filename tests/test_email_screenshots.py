"""The emails in headless Chromium at desktop (600 px) and phone (375 px) widths.

PNGs go to `var/screenshots/` (kept as CI artifacts, never committed) so a person can look
at what three different subscribers of the sample month receive.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from newsletter.rendering import clear_render_cache, render_preview, render_transactional
from newsletter.settings import REPO_ROOT, Settings
from newsletter.testing.sample_issue import build_sample_issue

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = REPO_ROOT / "var" / "screenshots"
WIDTHS = (600, 375)
TOPIC_SETS = {
    "all-topics": [],
    "optimization+ml-systems": ["optimization", "ml-systems"],
    "graph-learning": ["graph-learning"],
}


def _shoot(browser, html: str, name: str) -> dict[int, dict[str, int]]:  # noqa: ANN001
    """Screenshot `html` at each width; returns layout measurements per width."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    measured = {}
    for width in WIDTHS:
        page = browser.new_page(viewport={"width": width, "height": 800})
        # Block every request: an email must not need the network to be readable.
        page.route("**/*", lambda route: route.abort())
        page.set_content(html, wait_until="load")
        measured[width] = page.evaluate(
            """() => ({
                scrollWidth: document.documentElement.scrollWidth,
                clientWidth: document.documentElement.clientWidth,
                widest: Math.max(...[...document.querySelectorAll('body *')]
                    .map(e => e.getBoundingClientRect().right)),
                buttons: [...document.querySelectorAll('a')]
                    .filter(a => a.textContent.trim() === 'Read the paper')
                    .filter(a => a.getBoundingClientRect().width > 0).length,
                bodyText: document.body.innerText.length,
            })"""
        )
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}-{width}px.png"), full_page=True)
        page.close()
    return measured


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_three_subscribers_previews_render_without_horizontal_scroll(
    browser,
    session: Session,
    settings: Settings,  # noqa: ANN001
) -> None:
    clear_render_cache()
    build_sample_issue(session, "2026-05", papers=20)
    seen_text: set[str] = set()
    for name, topics in TOPIC_SETS.items():
        preview = render_preview(session, "2026-05", topics, settings)
        measured = _shoot(browser, preview.email.html, f"issue-2026-05-{name}")
        phone = measured[375]
        assert phone["scrollWidth"] <= 375, (name, phone)
        assert phone["widest"] <= 375.5, (name, phone)
        assert measured[600]["scrollWidth"] <= 600, (name, measured[600])
        assert phone["buttons"] >= 1 and phone["bodyText"] > 500
        seen_text.add(preview.email.html)
        assert (SCREENSHOT_DIR / f"issue-2026-05-{name}-375px.png").stat().st_size > 10_000
    assert len(seen_text) == 3


def test_transactional_emails_fit_a_phone(browser, tmp_path: Path) -> None:  # noqa: ANN001
    from newsletter.settings import load_settings

    settings = load_settings(
        var_dir=tmp_path, secret_key="k", postal_address="1 Test Street", _env_file=None
    )
    long_link = "http://127.0.0.1:8000/confirm/" + "A" * 160
    for kind in ("confirmation", "welcome"):
        email = render_transactional(
            kind,
            settings,
            email="a.very.long.address.for.testing.wrapping@subdomain.example.org",
            action_url=long_link,
            topics=["Optimization", "Graph & geometric learning"],
            preferences_url="http://127.0.0.1:8000/preferences/tok",
            unsubscribe_url="http://127.0.0.1:8000/unsubscribe/tok",
        )
        measured = _shoot(browser, email.html, kind)
        assert measured[375]["scrollWidth"] <= 375, (kind, measured[375])
