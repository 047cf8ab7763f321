"""`POST /webhooks/sendgrid`: SendGrid's signed event webhook.

403 unless the body carries a valid signature of the configured key (no key: every event is
refused); 400 for a body that is not a list of events. Repeated events are harmless.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from newsletter.db import session_scope
from newsletter.delivery.feedback import (
    MalformedEvents,
    SignatureError,
    record_sendgrid_events,
    verify_sendgrid_signature,
)

router = APIRouter()
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        verify_sendgrid_signature(
            request.app.state.settings.sendgrid_webhook_key,
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(TIMESTAMP_HEADER, ""),
        )
    except SignatureError as exc:
        return JSONResponse({"error": str(exc)}, status_code=403)
    try:
        events = json.loads(body)
    except ValueError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)

    def record():  # type: ignore[no-untyped-def]
        with session_scope(request.app.state.engine) as session:
            return record_sendgrid_events(session, events)

    try:
        report = await run_in_threadpool(record)
    except MalformedEvents as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(
        {"received": report.received, "new": report.new, "suppressed": report.suppressed}
    )
