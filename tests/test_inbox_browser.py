"""What readers see in Chromium: axe-core finds no serious or critical accessibility issue on
the public pages or in the emails; emails in dark mode and with <style> stripped (Gmail for
non-Google accounts) keep readable colours. Screenshots go to `var/screenshots/`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from newsletter import audience
from newsletter.models import IssueStatus
from newsletter.rendering import clear_render_cache, render_preview, render_transactional
from newsletter.settings import REPO_ROOT, load_settings
from newsletter.testing.accessibility import serious_violations
from newsletter.testing.live_server import free_port, live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from subscribers import lifecycle

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = REPO_ROOT / "var" / "screenshots"
STYLE_RE = re.compile(r"<style\b.*?</style>", re.S | re.I)
# Relative luminance contrast, as WCAG 2 defines it (the same figure axe reports).
CONTRAST_JS = """([fg, bg]) => {
    const lum = c => { const v = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(x => {
        x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


@pytest.fixture
def site(db_url, tmp_path, engine) -> Iterator[tuple[str, dict[str, str]]]:
    """A running site with a sent issue, plus a pending and an active subscriber's links."""
    port = free_port()
    settings = load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="browser-test-secret",
        postal_address="1 Test Street, Testville",
        _env_file=None,
    )
    with Session(engine) as session:
        issue = build_sample_issue(session, "2026-05", papers=12)
        issue.status = IssueStatus.SENT
        issue.sent_at = datetime(2026, 5, 28, 9, tzinfo=UTC)
        known = {"optimization"}
        pending = lifecycle.subscribe(
            session, "pending@example.org", ["optimization"], known_topics=known
        ).subscriber
        active = lifecycle.subscribe(
            session, "active@example.org", ["optimization"], known_topics=known
        ).subscriber
        session.flush()
        lifecycle.confirm(session, active, consent_text_version="1", source="test")
        session.commit()
        links = {
            "confirm": audience.links_for(settings, pending, absolute=False).confirm,
            "preferences": audience.links_for(settings, active, absolute=False).preferences,
            "unsubscribe": audience.links_for(settings, active, absolute=False).unsubscribe,
        }
    with live_server(create_app(settings), port=port) as base_url:
        yield base_url, links


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_public_pages_have_no_serious_accessibility_violations(
    browser, axe_source: str, site
) -> None:
    base_url, links = site
    context = browser.new_context(bypass_csp=True)  # our CSP forbids the injected axe script
    page = context.new_page()
    found: dict[str, list[str]] = {}
    paths = [
        "/",
        "/issues",
        "/issues/2026-05",
        "/issues/2026-05?topics=optimization",
        "/issues/2026-05/preview?topics=optimization",
        links["confirm"],
        links["preferences"],
        links["unsubscribe"],
        "/issues/1999-01",  # the error page
    ]
    for path in paths:
        page.goto(base_url + path)
        found[path] = serious_violations(page, axe_source)
    page.goto(base_url + "/")
    page.get_by_label("Email address").fill("new@example.org")
    page.get_by_role("button", name="Subscribe").click()
    found["check your inbox"] = serious_violations(page, axe_source)
    context.close()
    assert {path: v for path, v in found.items() if v} == {}


def _emails(session: Session, settings) -> dict[str, str]:  # noqa: ANN001
    clear_render_cache()
    build_sample_issue(session, "2026-05", papers=20)
    out = {
        "issue-all": render_preview(session, "2026-05", [], settings).email.html,
        "issue-optimization": render_preview(session, "2026-05", ["optimization"], settings),
    }
    out["issue-optimization"] = out["issue-optimization"].email.html
    for kind in ("confirmation", "welcome"):
        out[kind] = render_transactional(
            kind,
            settings,
            email="ada@example.org",
            action_url="https://news.example.org/confirm/WzEsMV0.aBcDeF.gHiJkL",
            topics=["Optimization"],
            preferences_url="https://news.example.org/preferences/tok",
            unsubscribe_url="https://news.example.org/unsubscribe/tok",
        ).html
    return out


def _colours(page) -> dict[str, object]:  # noqa: ANN001
    return page.evaluate(
        """() => {
        const first = s => document.querySelector(s);
        const style = e => e ? getComputedStyle(e) : null;
        const meta = style(first('.meta')), footerLink = style(first('.footer a'));
        const button = style(first('a.nl-btn') || first('.nl-button a'));
        return {
            body: getComputedStyle(document.querySelector('.nl-card')).backgroundColor,
            text: getComputedStyle(document.querySelector('.nl-card p')).color,
            meta: meta && meta.color, footerLink: footerLink && footerLink.color,
            button: button && [button.color, button.backgroundColor],
            styleTags: document.querySelectorAll('style').length,
        };
    }"""
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_emails_in_light_dark_and_without_style(
    browser, axe_source: str, session: Session, settings
) -> None:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    page = browser.new_page(viewport={"width": 600, "height": 900})
    page.route("**/*", lambda route: route.abort())  # an email needs no network
    for name, html in _emails(session, settings).items():
        page.emulate_media(color_scheme="light")
        page.set_content(html, wait_until="load")
        page.evaluate(axe_source)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            colours = _colours(page)
            assert _contrast(page, colours["text"], colours["body"]) >= 4.5, (name, scheme)
            if colours["button"]:
                assert _contrast(page, *colours["button"]) >= 4.5, (name, scheme, colours)
            white = colours["body"] == "rgb(255, 255, 255)"
            assert white == (scheme == "light"), (name, scheme, colours)
            found[f"{name} {scheme}"] = serious_violations(page)
            _shoot(page, f"{name}-{scheme}")
        # Gmail for non-Google accounts: every <style> removed, inline styles only.
        page.emulate_media(color_scheme="light")
        page.set_content(STYLE_RE.sub("", html), wait_until="load")
        colours = _colours(page)
        assert colours["styleTags"] == 0 and colours["body"] == "rgb(255, 255, 255)"
        assert _contrast(page, colours["text"], colours["body"]) >= 4.5, name
        if colours["meta"]:  # looks that used to live only in <style> survive (inline.css)
            assert colours["meta"] == "rgb(82, 96, 109)", (name, colours)
        assert colours["footerLink"] == "rgb(51, 78, 104)", (name, colours)
        _shoot(page, f"{name}-no-style")
    page.close()
    assert {k: v for k, v in found.items() if v} == {}


def _contrast(page, fg: str, bg: str) -> float:  # noqa: ANN001
    return page.evaluate(CONTRAST_JS, [fg, bg])


def _shoot(page, name: str) -> None:  # noqa: ANN001
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
