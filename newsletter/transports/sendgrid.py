"""SendGrid v3 `/v3/mail/send`: one request per batch, one personalization per recipient.

The body is sent once with placeholders; each personalization carries that person's
`substitutions`, their own `List-Unsubscribe` headers and the delivery id in `custom_args`,
so SendGrid fills in the links and the webhook can name the delivery.

Where a failure happened decides what it means: urllib wraps errors raised while the request
is being written in `URLError` (nothing was accepted: safe to retry), while a timeout or a
dropped connection while waiting for the answer leaves the outcome unknown.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from urllib.error import URLError

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from newsletter.transports.base import (
    Batch,
    Outcome,
    RecipientResult,
    TransportUnavailable,
    check_header_value,
)

DEFAULT_TIMEOUT = 30.0
MAX_PERSONALIZATIONS = 1000
# This newsletter tracks nobody: switch off whatever the account has on (link rewriting,
# open pixel, SendGrid's own unsubscribe footer, Google Analytics parameters).
TRACKING_OFF = {
    name: {"enable": False}
    for name in ("click_tracking", "open_tracking", "subscription_tracking", "ganalytics")
}


def sendgrid_payload(batch: Batch) -> dict[str, Any]:
    """The JSON body of one `/v3/mail/send` request for this batch."""
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
            p["substitutions"] = dict(r.substitutions)
        if r.headers:
            p["headers"] = {k: check_header_value(k, v) for k, v in r.headers.items()}
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
        "tracking_settings": {k: dict(v) for k, v in TRACKING_OFF.items()},
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


def _provider_message(exc: http_errors.HTTPError) -> str:
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
    try:
        errors = json.loads(body).get("errors") or []
        messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        text = "; ".join(m for m in messages if m)
    except (ValueError, AttributeError):
        text = body.strip()
    return f"SendGrid {exc.status_code}: {text or exc.reason}"[:1000]


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

    def _refused(self, batch: Batch, exc: http_errors.HTTPError) -> list[RecipientResult]:
        status = int(exc.status_code)
        message = _provider_message(exc)
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
