"""Confirmation and welcome emails: fully filled, escaped, with their plain-text twins."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.rendering import render_transactional
from newsletter.settings import Settings, load_settings
from newsletter.substitution import PLACEHOLDER_RE


@pytest.fixture
def plain_settings(tmp_path: Path) -> Settings:
    return load_settings(
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        postal_address="1 Test Street & Sons, <Testville>",
        _env_file=None,
    )


def test_confirmation_has_button_topics_and_ignore_note(plain_settings: Settings) -> None:
    url = "http://127.0.0.1:8000/confirm/abc.DEF-123_x"
    email = render_transactional(
        "confirmation",
        plain_settings,
        email="reader@example.org",
        action_url=url,
        topics=["Optimization", "Graph & geometric learning"],
    )
    assert email.subject == f"Please confirm your subscription to {plain_settings.title}"
    assert f'href="{url}"' in email.html
    assert "Confirm my subscription" in email.html
    assert "Graph &amp; geometric learning" in email.html
    assert "Graph & geometric learning" not in email.html
    assert "ignore this email" in email.html
    assert "1 Test Street &amp; Sons, &lt;Testville&gt;" in email.html
    for part in (email.html, email.text):
        assert "reader@example.org" in part
        assert not PLACEHOLDER_RE.search(part)
    assert url in email.text
    assert "Graph & geometric learning" in email.text
    assert "ignore this email" in email.text
    assert "1 Test Street & Sons, <Testville>" in email.text


def test_confirmation_without_topics_says_all(plain_settings: Settings) -> None:
    email = render_transactional(
        "confirmation", plain_settings, email="a@example.org", action_url="http://x/c/1", topics=[]
    )
    assert "all of them" in email.html and "all of them" in email.text


def test_welcome_lists_topics_and_preference_links(plain_settings: Settings) -> None:
    email = render_transactional(
        "welcome",
        plain_settings,
        email="a@example.org",
        action_url="",
        topics=["Transformers & sequence models"],
        preferences_url="http://127.0.0.1:8000/preferences/tok1",
        unsubscribe_url="http://127.0.0.1:8000/unsubscribe/tok2",
    )
    assert email.subject == f"Welcome to {plain_settings.title}"
    assert "Transformers &amp; sequence models" in email.html
    assert 'href="http://127.0.0.1:8000/preferences/tok1"' in email.html
    assert 'href="http://127.0.0.1:8000/unsubscribe/tok2"' in email.html
    assert "http://127.0.0.1:8000/preferences/tok1" in email.text
    assert "http://127.0.0.1:8000/unsubscribe/tok2" in email.text
    assert "Transformers & sequence models" in email.text


def test_hostile_address_is_escaped(plain_settings: Settings) -> None:
    email = render_transactional(
        "confirmation",
        plain_settings,
        email='"<script>x</script>"@example.org',
        action_url="http://x/c/1",
        topics=[],
    )
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html


def test_unknown_kind_is_refused(plain_settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown transactional"):
        render_transactional(
            "reminder",  # type: ignore[arg-type]
            plain_settings,
            email="a@example.org",
            action_url="",
            topics=[],
        )
