"""The email template environment and the one MJML compile step.

Jinja renders first (autoescaped for `.mjml.j2`, plain for `.txt.j2`), then MRML compiles the
resulting MJML; MRML cannot parse Jinja tags, so the two never mix in one pass.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from mjml import mjml2html

from newsletter.errors import NewsletterError
from newsletter.months import month_label
from newsletter.settings import REPO_ROOT

EMAIL_TEMPLATE_DIR = REPO_ROOT / "templates" / "email"
INLINE_CSS_PATH = EMAIL_TEMPLATE_DIR / "inline.css"


def _template_fingerprint() -> str:
    """Hash of every email template: editing one invalidates every cached render."""
    digest = hashlib.sha256()
    for path in sorted([*EMAIL_TEMPLATE_DIR.rglob("*.j2"), INLINE_CSS_PATH]):
        digest.update(path.relative_to(EMAIL_TEMPLATE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


TEMPLATE_VERSION = _template_fingerprint()


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(EMAIL_TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("mjml.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["month_label"] = month_label
    return env


def render_template(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(**context)


def compile_mjml(source: str, template_name: str = "email") -> str:
    """MJML -> HTML; a malformed template is reported with its name, not a Rust panic text."""
    try:
        # fonts={}: MRML would otherwise import Roboto etc. from Google Fonts, a third-party
        # request on every open that leaks readers' addresses; the system font stack is enough.
        return mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mrml raises its own error types
        raise NewsletterError(f"email template {template_name} did not compile: {exc}") from None


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Only inline.css is inlined: MJML's own resets stay in <style> (inlining them would
    # put the same declarations on every table cell), and so do the media queries.
    return css_inline.CSSInliner(
        inline_style_tags=False,
        keep_style_tags=True,
        load_remote_stylesheets=False,
        extra_css=INLINE_CSS_PATH.read_text(encoding="utf-8"),
    )


def inline_styles(html: str) -> str:
    """Write inline.css into the style attribute of each element it matches."""
    return _inliner().inline(html)


def render_email_parts(name: str, context: dict[str, Any]) -> tuple[str, str]:
    """(html, text) for `templates/email/{name}.mjml.j2` and its `.txt.j2` twin."""
    mjml_source = render_template(f"{name}.mjml.j2", context)
    html = inline_styles(compile_mjml(mjml_source, f"{name}.mjml.j2"))
    text = _tidy_text(render_template(f"{name}.txt.j2", context))
    return html, text


def _tidy_text(text: str) -> str:
    """Collapse the blank-line runs that template conditionals leave behind."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line and lines and not lines[-1]:
            continue
        lines.append(line)
    return "\n".join(lines).strip() + "\n"
