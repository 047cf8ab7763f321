"""Queued mail leaves after the answer: woken in the mail process, or sent here.

`newsletter serve` runs a mail process (`mail_sender`) and the answer only wakes it. An app
served any other way (tests, another ASGI server) has none, so the mail is sent from this
process once the answer is out, as before the queue existed.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter import audience
from newsletter.mail_sender import MailSender

log = logging.getLogger(__name__)


def mail_after_answer(request: Request, response: Response, queued: int | None) -> Response:
    """`response`, with the queued mail (if any) sent once it has gone out."""
    if queued is None:
        return response
    sender = getattr(request.app.state, "mail_sender", None)
    if sender is not None:
        response.background = BackgroundTask(_wake, sender)
    else:
        response.background = BackgroundTask(
            _deliver_here, request.app.state.engine, request.app.state.settings, queued
        )
    return response


async def _wake(sender: MailSender) -> None:
    sender.wake()  # one byte on a non-blocking pipe: no need for a worker thread


def _deliver_here(engine, settings, queued: int) -> None:  # type: ignore[no-untyped-def]
    try:
        audience.deliver_queued(engine, settings, ids=[queued])
    except Exception:  # the answer is gone; the row stays queued for a mail process
        log.exception("queued mail %s not sent", queued)
