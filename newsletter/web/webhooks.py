"""`POST /webhooks/sendgrid`: SendGrid's signed event webhook.

403 unless the body carries a valid signature of the configured key (no key: every event is
refused) made within NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS; 400 for a body that is not a list
of events. Repeated events are harmless. The headers are checked before the body is read,
and the body is capped (NEWSLETTER_MAX_BODY_BYTES), so an unsigned caller costs nothing.

A `dropped` event for a reason about our account or content (not the recipient) suppresses
nobody; the editors (NEWSLETTER_EDITORS) get one mail per webhook call that brought any.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from newsletter.db import session_scope
from newsletter.delivery.feedback import (
    MalformedEvents,
    SignatureError,
    check_signature_headers,
    record_sendgrid_events,
    verify_sendgrid_signature,
)
from newsletter.settings import Settings
from newsletter.transports import notify_editors

log = logging.getLogger("newsletter.webhooks")
router = APIRouter()
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


MAX_JSON_DEPTH = 16  # a list of events whose values are at most a list or object deep


def _deeper_than(value: object, limit: int) -> bool:
    """True when containers nest more than `limit` deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item)
    return False


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    try:
        check_signature_headers(
            settings.sendgrid_webhook_key,
            signature,
            timestamp,
            max_age=settings.webhook_max_age_seconds,
        )
        body = await request.body()
        verify_sendgrid_signature(settings.sendgrid_webhook_key, body, signature, timestamp)
    except SignatureError as exc:
        return JSONResponse({"error": str(exc)}, status_code=403)
    try:
        events = json.loads(body)
    except RecursionError:  # a RuntimeError, not a ValueError
        return JSONResponse({"error": "body is nested too deeply"}, status_code=400)
    except ValueError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    if _deeper_than(events, MAX_JSON_DEPTH):
        return JSONResponse({"error": "body is nested too deeply"}, status_code=400)

    def record():  # type: ignore[no-untyped-def]
        with session_scope(request.app.state.engine) as session:
            return record_sendgrid_events(session, events)

    try:
        report = await run_in_threadpool(record)
    except MalformedEvents as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if report.sender_drops:
        await run_in_threadpool(alert_editors, settings, report.sender_drops)
    return JSONResponse(
        {
            "received": report.received,
            "new": report.new,
            "suppressed": report.suppressed,
            "unsubscribed": report.unsubscribed,
            "sender_drops": len(report.sender_drops),
        }
    )


def alert_editors(settings: Settings, reasons: list[str]) -> None:
    """Tell the editors SendGrid refused to send for a reason that is ours to fix."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    lines = [f"{n} x {reason}" for reason, n in sorted(counts.items())]
    log.warning("SendGrid dropped %d message(s) for sender reasons: %s", len(reasons), lines)
    text = (
        "SendGrid dropped messages for reasons about the sending account or the content, "
        "not the recipients (nobody was suppressed):\n\n"
        + "\n".join(lines)
        + "\n\nSee `newsletter issue status MONTH` (dropped_sender) and the SendGrid account."
    )
    notify_editors(settings, f"SendGrid dropped {len(reasons)} message(s): {lines[0]}", text)
