"""Rendering emails: Jinja2 -> MJML -> HTML once per topic-set variant, then personalised
per recipient by plain placeholder substitution (never by recompiling MJML)."""

from newsletter.rendering.message import RenderedEmail, personalize
from newsletter.rendering.templates import TEMPLATE_VERSION
from newsletter.rendering.transactional import render_transactional

__all__ = ["TEMPLATE_VERSION", "RenderedEmail", "personalize", "render_transactional"]
