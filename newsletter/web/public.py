"""Landing page, the subscribe form's target and the confirmation link (double opt-in)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from newsletter import audience
from newsletter.db import read_session
from newsletter.models import Issue, IssueStatus
from newsletter.web.outgoing import mail_after_answer
from newsletter.web.pages import error_page, render_page, too_many_requests
from newsletter.web.security import client_address
from newsletter.web.writes import run_write
from subscribers import lifecycle
from subscribers.tokens import TokenError

log = logging.getLogger(__name__)
router = APIRouter()
HONEYPOT_FIELD = "website"  # hidden from people; bots that fill every field give themselves away
MAX_FORM_FIELDS = 100
MAX_FORM_BYTES = 16 * 1024  # the subscribe and preferences forms fill well under 1 KB


def _landing_context(request: Request) -> dict[str, object]:
    with read_session(request.app.state.engine) as session:
        latest = session.exec(
            select(Issue)
            .where(Issue.status == IssueStatus.SENT)
            .order_by(col(Issue.month).desc())
            .limit(1)
        ).first()
        topics = audience.topic_catalog(session)
        start = audience.start_here_list(session, request.app.state.settings)
    return {
        "latest": latest,
        "topics": topics,
        "consent_text": audience.CONSENT_TEXT,
        "start_here": start,
    }


@router.get("/", response_class=HTMLResponse)
def landing(request: Request) -> HTMLResponse:
    return render_page(request, "landing.html", **_landing_context(request), form={}, error="")


@router.get("/start-here", response_class=HTMLResponse)
def start_here_page(request: Request) -> HTMLResponse:
    """The editors' reading list of foundational papers, for readers who want the classics
    before the news."""
    with read_session(request.app.state.engine) as session:
        entries = audience.start_here_list(session, request.app.state.settings)
    return render_page(request, "start_here.html", entries=entries)


async def read_form(request: Request) -> FormData | None:
    """The posted form, or None when the body is not a form we accept (too many fields,
    more bytes than the form can hold: parsing 5 MB of form costs more than refusing it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return None
    if len(await request.body()) > MAX_FORM_BYTES:  # chunked; the body stays for form()
        return None
    try:
        return await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    except (StarletteHTTPException, MultiPartException):  # Starlette's 400 for a bad form
        return None


def topics_from_form(form: FormData) -> list[str]:
    """`topics` may repeat (checkboxes) and each value may hold several slugs joined by commas.

    Raises lifecycle.TooManyTopics, before splitting, for more input than any real choice."""
    return lifecycle.split_topics(str(value) for value in form.getlist("topics"))


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request) -> HTMLResponse:
    wait = request.app.state.subscribe_limiter.hit(client_address(request))
    if wait:
        return too_many_requests(
            request,
            wait,
            "This connection has sent the subscribe form too often. "
            f"Please try again in {int(wait // 60) + 1} minute(s).",
        )
    form = await read_form(request)
    if form is None:
        return error_page(request, 400, "Form not understood", "Please use the subscribe form.")
    email = form.get("email")
    try:
        topics = topics_from_form(form)
    except lifecycle.TooManyTopics as exc:
        return error_page(request, 400, "Form not understood", f"{str(exc).capitalize()}.")
    if form.get(HONEYPOT_FIELD):
        return render_page(request, "check_inbox.html")
    settings = request.app.state.settings
    try:
        _, queued = await run_write(
            request,
            audience.record_subscription,
            request.app.state.engine,
            settings,
            email if isinstance(email, str) else "",
            topics,
            client_address=client_address(request),
        )
    except lifecycle.SubscriberError as exc:
        context = await run_in_threadpool(_landing_context, request)
        shown = {"email": email if isinstance(email, str) else "", "topics": set(topics)}
        return render_page(request, "landing.html", 400, **context, form=shown, error=str(exc))
    # The same answer for new, pending, active, unsubscribed and suppressed addresses; the
    # mail, when one is due, goes after the answer so its cost does not show in timing.
    return mail_after_answer(request, render_page(request, "check_inbox.html"), queued)


@router.post("/link", response_class=HTMLResponse)
async def email_my_link(request: Request) -> HTMLResponse:
    """ "Email me my link": mails a known address its preferences link. The same page answers
    for every address, the mail goes after the answer (no timing tell), and the limits are
    those of subscribing: per client here, per address per day in the database."""
    wait = request.app.state.link_limiter.hit(client_address(request))
    if wait:
        return too_many_requests(
            request,
            wait,
            "This connection has asked for links too often. "
            f"Please try again in {int(wait // 60) + 1} minute(s).",
        )
    form = await read_form(request)
    if form is None:
        return error_page(request, 400, "Form not understood", "Please use the link form.")
    email = form.get("email")
    if form.get(HONEYPOT_FIELD):
        return render_page(request, "link_sent.html", error="", email="")
    try:
        queued = await run_write(
            request,
            audience.record_link_request,
            request.app.state.engine,
            email if isinstance(email, str) else "",
        )
    except lifecycle.SubscriberError as exc:
        return render_page(
            request,
            "link_sent.html",
            400,
            error=str(exc).capitalize() + ".",
            email=email if isinstance(email, str) else "",
        )
    return mail_after_answer(
        request, render_page(request, "link_sent.html", error="", email=""), queued
    )


def _bad_confirm_link(request: Request, exc: Exception) -> HTMLResponse:
    return error_page(
        request,
        400,
        "This link does not work",
        f"{str(exc).capitalize()}. You can subscribe again from the home page, or have "
        "your current link emailed to you below.",
        offer_link=True,
    )


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> HTMLResponse:
    """What will be confirmed and a button; changes nothing. Corporate link scanners (Safe
    Links, Mimecast) open every link of every mail, so a GET must never subscribe anyone."""
    try:
        sub, topics = audience.confirmation_request(
            request.app.state.engine, request.app.state.settings, token
        )
    except (TokenError, lifecycle.NotSubscribed) as exc:
        return _bad_confirm_link(request, exc)
    return render_page(request, "confirm.html", subscriber=sub, topics=topics, token=token)


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str) -> HTMLResponse:
    """Activates: the signed token is the whole authority (no cookie), and a second POST
    changes nothing and sends no second welcome."""
    try:
        sub, _ = audience.confirm_subscription(
            request.app.state.engine,
            request.app.state.settings,
            token,
            client_address=client_address(request),
        )
    except (TokenError, lifecycle.NotSubscribed) as exc:
        return _bad_confirm_link(request, exc)
    links = audience.links_for(request.app.state.settings, sub, absolute=False)
    return render_page(request, "confirmed.html", email=sub.email, links=links)
