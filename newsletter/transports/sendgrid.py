"""SendGrid v3 `/v3/mail/send`: one request per batch, one personalization per recipient.

The body is sent once with placeholders; each personalization carries that person's
`substitutions`, their own `List-Unsubscribe` headers and the delivery id in `custom_args`,
so SendGrid fills in the links and the webhook can name the delivery. Tracking is off.

Where a failure happened decides what it means: urllib wraps errors raised while the request
is being written in `URLError` (nothing was accepted: safe to retry), while a timeout or a
dropped connection while waiting for the answer leaves the outcome unknown.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from email.utils import parseaddr
from typing import Any
from urllib.error import URLError

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from newsletter.substitution import check_header_value
from newsletter.transports.base import (
    Batch,
    Outcome,
    RecipientResult,
    TransportUnavailable,
)

DEFAULT_TIMEOUT = 30.0
MAX_PERSONALIZATIONS = 1000


# The newsletter tracks nobody: SendGrid's link rewriting, open pixel, its own unsubscribe
# footer and Google Analytics parameters are all switched off in every request.
TRACKING_OFF: dict[str, dict[str, bool]] = {
    "click_tracking": {"enable": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
    "ganalytics": {"enable": False},
}


def sendgrid_payload(batch: Batch) -> dict[str, Any]:
    """The JSON body of one `/v3/mail/send` request for this batch, as plain data.

    One pass over the recipients: each personalization takes the recipient's substitutions
    and headers as they are (they were built for this), so a batch of 1,000 costs about a
    millisecond before JSON encoding.
    """
    if not 1 <= len(batch.recipients) <= MAX_PERSONALIZATIONS:
        raise ValueError(f"a SendGrid batch holds 1..{MAX_PERSONALIZATIONS} recipients")
    name, address = parseaddr(batch.from_addr)
    sender: dict[str, str] = {"email": address}
    if name:
        sender["name"] = name
    personalizations = []
    for r in batch.recipients:
        p: dict[str, Any] = {"to": [{"email": r.email}]}
        if r.substitutions:
            p["substitutions"] = r.substitutions
        if r.headers:
            for k, v in r.headers.items():
                check_header_value(k, v)
            p["headers"] = r.headers
        if r.delivery_id is not None:
            p["custom_args"] = {"delivery_id": str(r.delivery_id)}
        personalizations.append(p)
    payload: dict[str, Any] = {
        "personalizations": personalizations,
        "from": sender,
        "subject": check_header_value("Subject", batch.subject),
        # SendGrid requires text/plain before text/html.
        "content": [
            {"type": "text/plain", "value": batch.text},
            {"type": "text/html", "value": batch.html},
        ],
        "tracking_settings": TRACKING_OFF,
    }
    if batch.headers:
        payload["headers"] = {k: check_header_value(k, v) for k, v in batch.headers.items()}
    if batch.categories:
        payload["categories"] = list(batch.categories)
    if batch.reply_to:
        reply_name, reply_address = parseaddr(batch.reply_to)
        payload["reply_to"] = {"email": reply_address}
        if reply_name:
            payload["reply_to"]["name"] = reply_name
    return payload


def retry_after_seconds(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` or `X-RateLimit-Reset` (an epoch time), if given."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def _provider_errors(exc: http_errors.HTTPError) -> tuple[str, list[str]]:
    """The provider's message for a refused request, and the fields its errors name."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
    fields: list[str] = []
    try:
        errors = [e for e in json.loads(body).get("errors") or [] if isinstance(e, dict)]
        messages = [str(e.get("message", "")) for e in errors]
        fields = [str(e.get("field") or "") for e in errors]
        text = "; ".join(m for m in messages if m)
    except (ValueError, AttributeError):
        text = body.strip()
    return f"SendGrid {exc.status_code}: {text or exc.reason}"[:1000], fields


def _names_a_recipient(fields: list[str]) -> bool:
    """True when a 400 blames one personalization (`personalizations.12.to.0.email`):
    then the rest of the batch is fine and worth sending without it."""
    return any(re.match(r"personalizations\.\d+\.", f) for f in fields)


class SendgridTransport:
    name = "sendgrid"

    def __init__(self, api_key: str, host: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_key = api_key
        self.host = host.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()
        self.requests = 0  # requests made, for reports and benchmarks
        self._count_lock = threading.Lock()

    def _client(self) -> SendGridAPIClient:
        # python_http_client mutates its shared header dict per request: one client per thread.
        client = getattr(self._local, "client", None)
        if client is None:
            client = SendGridAPIClient(api_key=self.api_key, host=self.host)
            client.client.timeout = self.timeout
            self._local.client = client
        return client

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        """One request; a 400 that blames one recipient is split in halves and retried
        (nothing of a 400 was accepted), so only that recipient fails, with SendGrid's
        reason, and the other 999 go out in a few more requests."""
        try:
            payload = sendgrid_payload(batch)
        except ValueError as exc:
            return self._all(batch, Outcome.FAILED, error=str(exc))
        with self._count_lock:
            self.requests += 1
        try:
            response = self._client().client.mail.send.post(
                request_body=payload, timeout=self.timeout
            )
        except http_errors.HTTPError as exc:
            if int(exc.status_code) == 400 and len(batch.recipients) > 1:
                _, fields = _provider_errors(exc)
                if _names_a_recipient(fields):
                    return self._bisect(batch)
            return self._refused(batch, exc)
        except URLError as exc:
            # Raised while connecting or writing the request: SendGrid accepted nothing.
            return self._all(batch, Outcome.RETRY, error=f"SendGrid unreachable: {exc.reason}")
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return self._all(
                batch,
                Outcome.UNKNOWN,
                error=f"no answer from SendGrid after the request was sent ({exc!r})",
            )
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        if response.status_code != 202:
            return self._all(
                batch, Outcome.UNKNOWN, error=f"SendGrid answered {response.status_code}"
            )
        return self._all(batch, Outcome.SENT, message_id=message_id)

    def _bisect(self, batch: Batch) -> list[RecipientResult]:
        half = len(batch.recipients) // 2
        first = replace(batch, recipients=batch.recipients[:half])
        second = replace(batch, recipients=batch.recipients[half:])
        return self.send_batch(first) + self.send_batch(second)

    def _refused(self, batch: Batch, exc: http_errors.HTTPError) -> list[RecipientResult]:
        status = int(exc.status_code)
        message, _ = _provider_errors(exc)
        if status in (401, 403):
            raise TransportUnavailable(f"{message} (check SENDGRID_API_KEY)")
        if status == 429 or status >= 500:
            return self._all(
                batch, Outcome.RETRY, error=message, retry_after=retry_after_seconds(exc.headers)
            )
        return self._all(batch, Outcome.FAILED, error=message)

    @staticmethod
    def _all(
        batch: Batch,
        outcome: Outcome,
        *,
        message_id: str = "",
        error: str = "",
        retry_after: float | None = None,
    ) -> list[RecipientResult]:
        return [
            RecipientResult(
                r.email,
                outcome,
                message_id=message_id,
                error=error,
                delivery_id=r.delivery_id,
                retry_after=retry_after,
            )
            for r in batch.recipients
        ]

    def close(self) -> None:
        self._local = threading.local()
