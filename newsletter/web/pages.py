"""Server-rendered pages: one Jinja2 environment (autoescaped) over `templates/web/`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from newsletter.months import month_label
from newsletter.settings import REPO_ROOT

WEB_TEMPLATE_DIR = REPO_ROOT / "templates" / "web"


@lru_cache(maxsize=1)
def environment() -> Environment:
    # autoescape=True for every template: page data (titles, addresses) is never trusted.
    env = Environment(
        loader=FileSystemLoader(WEB_TEMPLATE_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["month_label"] = month_label
    return env


def render_page(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    settings = request.app.state.settings
    html = (
        environment()
        .get_template(template)
        .render(
            settings=settings,
            site_title=settings.title,
            local_outbox=request.app.state.local_outbox,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=headers)


def too_many_requests(request: Request, wait: float, message: str) -> HTMLResponse:
    """The 429 page of every rate limit, with `Retry-After` in whole seconds."""
    return error_page(
        request, 429, "Too many requests", message, headers={"Retry-After": str(int(wait))}
    )


def error_page(
    request: Request,
    status_code: int,
    heading: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    offer_link: bool = False,
) -> HTMLResponse:
    """`offer_link`: the page also holds the "email me my link" form (a link that failed)."""
    return render_page(
        request,
        "error.html",
        status_code=status_code,
        headers=headers,
        heading=heading,
        message=message,
        status_code_shown=status_code,
        offer_link=offer_link,
    )
