"""Rendering emails: Jinja2 -> MJML -> HTML once per topic-set variant, then personalised
per recipient by plain placeholder substitution (never by recompiling MJML)."""

from newsletter.rendering.issue_email import (
    clear_render_cache,
    compile_issue_variant,
    issue_subject,
    render_issue_variant,
)
from newsletter.rendering.message import RenderedEmail, personalize
from newsletter.rendering.preview import render_preview
from newsletter.rendering.recipients import (
    RECIPIENT_FIELDS,
    RecipientFields,
    browser_url,
    list_headers,
    preview_substitutions,
    recipient_headers,
    recipient_links,
    recipient_substitutions,
    test_copy_substitutions,
)
from newsletter.rendering.templates import TEMPLATE_VERSION
from newsletter.rendering.transactional import render_transactional
from newsletter.rendering.variants import (
    EVERYTHING,
    NO_MATCH,
    issue_topic_slugs,
    parse_variant,
    variant_for,
)

__all__ = [
    "EVERYTHING",
    "NO_MATCH",
    "RECIPIENT_FIELDS",
    "TEMPLATE_VERSION",
    "RecipientFields",
    "RenderedEmail",
    "browser_url",
    "clear_render_cache",
    "compile_issue_variant",
    "issue_subject",
    "issue_topic_slugs",
    "list_headers",
    "parse_variant",
    "personalize",
    "preview_substitutions",
    "recipient_headers",
    "recipient_links",
    "recipient_substitutions",
    "render_issue_variant",
    "render_preview",
    "render_transactional",
    "test_copy_substitutions",
    "variant_for",
]
