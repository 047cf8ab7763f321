"""A fake SendGrid v3 mail API on 127.0.0.1 that validates like the real one and misbehaves
on request.

It checks what the real `/v3/mail/send` checks (Bearer key, at most 1,000 personalizations
and recipients, required fields, `text/plain` before `text/html`, substitution and
custom-arg sizes), answers 202 with `X-Message-Id`, and records every accepted recipient.
`GET /v3/scopes` answers the key's permissions (401 on a bad key), as `newsletter doctor`
asks it.
Faults are configured on the instance: a fault rate over 429/500/503 (429 carries
`X-RateLimit-Reset`), requests that hang past the client's timeout, added latency, or an
explicit script of answers for the next requests.

    with FakeSendgrid(api_key="k", latency=0.1, fault_rate=0.2) as fake:
        transport = SendgridTransport("k", fake.url)

Why this module is long: it is one fake server, the real API's validation and the faults
the tests script against it.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


@dataclass(frozen=True)
class AcceptedRecipient:
    email: str
    message_id: str
    subject: str
    substitutions: dict[str, str]
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: tuple[str, ...]
    hung: bool = False  # accepted by a request whose answer never came


@dataclass
class FakeSendgridState:
    requests: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    accepted: list[AcceptedRecipient] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # accepted request bodies
    accepted_count: int = 0


class ValidationFailure(Exception):
    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field_name = field_name


def validate_mail_send(body: Any, refused_addresses: Collection[str] = ()) -> None:
    """Raise ValidationFailure the way SendGrid answers 400 for a malformed request.

    `refused_addresses` are addresses the real API would call invalid although they look
    fine to us (its address rules are its own): one of them fails the whole request with
    a 400 naming its personalization, as SendGrid does.
    """
    if not isinstance(body, dict):
        raise ValidationFailure("The request body must be a JSON object.")
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        raise ValidationFailure("The from object must be provided for every email send.", "from")
    persons = body.get("personalizations")
    if not isinstance(persons, list) or not persons:
        raise ValidationFailure(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if len(persons) > MAX_PERSONALIZATIONS:
        raise ValidationFailure(
            "The personalizations field may not have more than 1000 items.", "personalizations"
        )
    recipients = 0
    for i, p in enumerate(persons):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            raise ValidationFailure("Each personalization must be an object.", where)
        to = p.get("to")
        if not isinstance(to, list) or not to:
            raise ValidationFailure(
                "The to array is required for all personalization objects.", where
            )
        for kind in ("to", "cc", "bcc"):
            for j, rcpt in enumerate(p.get(kind) or []):
                address = str(rcpt.get("email", "")) if isinstance(rcpt, dict) else ""
                if "@" not in address or address in refused_addresses:
                    raise ValidationFailure(
                        "Does not contain a valid address.", f"{where}.{kind}.{j}.email"
                    )
                recipients += 1
        if not (p.get("subject") or body.get("subject")):
            raise ValidationFailure("The subject is required.", "subject")
        subs = p.get("substitutions") or {}
        if not isinstance(subs, dict) or not all(isinstance(v, str) for v in subs.values()):
            raise ValidationFailure("Substitutions must be string values.", where)
        if _size(subs) > MAX_SUBSTITUTION_BYTES:
            raise ValidationFailure(
                "The total size of your substitutions may not exceed 10000 bytes per "
                "personalization object.",
                f"{where}.substitutions",
            )
        args = p.get("custom_args") or {}
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise ValidationFailure("Custom args must be string values.", where)
        if _size(args) > MAX_CUSTOM_ARGS_BYTES:
            raise ValidationFailure("Custom args may not exceed 10000 bytes.", where)
        _check_headers(p.get("headers") or {}, f"{where}.headers")
    if recipients > MAX_RECIPIENTS:
        raise ValidationFailure(
            "The total number of recipients must be no more than 1000.", "personalizations"
        )
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise ValidationFailure("Unless a valid template_id is provided, content is required.")
    types = []
    for c in content:
        if not isinstance(c, dict) or not c.get("type") or not isinstance(c.get("value"), str):
            raise ValidationFailure("Content must have a type and a string value.", "content")
        if not c["value"]:
            raise ValidationFailure("The content value must be a string at least one character.")
        types.append(c["type"])
    if "text/plain" in types and types.index("text/plain") != 0:
        raise ValidationFailure(
            "If present, text/plain content must be first, followed by text/html.", "content"
        )
    if "text/html" in types and "text/plain" in types and types.index("text/html") != 1:
        raise ValidationFailure("text/html must follow text/plain.", "content")
    _check_headers(body.get("headers") or {}, "headers")
    tracking = body.get("tracking_settings") or {}
    if not isinstance(tracking, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("enable", False), bool) for v in tracking.values()
    ):
        raise ValidationFailure("Tracking settings need a boolean enable.", "tracking_settings")
    categories = body.get("categories") or []
    if len(categories) > MAX_CATEGORIES or any(len(str(c)) > 255 for c in categories):
        raise ValidationFailure("At most 10 categories of at most 255 characters.", "categories")


def _help_url(exc: ValidationFailure) -> str:
    """The documentation link SendGrid puts in each error (`help`)."""
    anchor = "message"
    if exc.field_name and exc.field_name.startswith("personalizations."):
        anchor = "message.personalizations." + exc.field_name.split(".")[2]
    return f"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#{anchor}"


def _size(mapping: dict[str, str]) -> int:
    """Bytes of keys and values, as SendGrid counts a personalization's substitutions."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _check_headers(headers: Any, where: str) -> None:
    if not isinstance(headers, dict):
        raise ValidationFailure("Headers must be an object.", where)
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise ValidationFailure(f"The header {name} is reserved.", where)
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValidationFailure(f"Invalid header value for {name}.", where)


class FakeSendgrid:
    """A threaded HTTP server speaking the part of SendGrid v3 this service uses."""

    def __init__(
        self,
        api_key: str = "SG.test-key",
        *,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[int, ...] = (429, 500, 503),
        hang_rate: float = 0.0,
        hang_seconds: float = 5.0,
        rate_limit_reset: float = 1.0,
        seed: int | None = 0,
        record: bool = True,
        scopes: tuple[str, ...] = ("mail.send", "user.profile.read"),
    ) -> None:
        self.api_key = api_key
        self.scopes = scopes  # what GET /v3/scopes lists for the key
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.hang_rate = hang_rate
        self.hang_seconds = hang_seconds
        self.rate_limit_reset = rate_limit_reset
        self.record = record  # False: count recipients only (benchmarks keep memory flat)
        self.script: deque[int | str] = deque()  # next answers: a status code or "hang"
        self.refused_addresses: set[str] = set()  # valid-looking, but SendGrid says 400
        self.state = FakeSendgridState()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeSendgrid:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle_get(self)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSendgrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what it saw ---------------------------------------------------------------------
    @property
    def accepted_emails(self) -> list[str]:
        with self._lock:
            return [a.email for a in self.state.accepted]

    @property
    def requests(self) -> int:
        with self._lock:
            return self.state.requests

    def reset(self) -> None:
        with self._lock:
            self.state = FakeSendgridState()

    # -- answering -----------------------------------------------------------------------
    def _decide(self) -> int | str:
        with self._lock:
            self.state.requests += 1
            if self.script:
                return self.script.popleft()
            roll = self._random.random()
            if roll < self.hang_rate:
                return "hang"
            if roll < self.hang_rate + self.fault_rate:
                return self._random.choice(self.faults)
            return 202

    def _unauthorized(self, req: BaseHTTPRequestHandler) -> None:
        return self._answer(
            req,
            401,
            {
                "errors": [
                    {
                        "message": "The provided authorization grant is invalid, expired, "
                        "or revoked",
                        "field": None,
                    }
                ]
            },
        )

    def _handle_get(self, req: BaseHTTPRequestHandler) -> None:
        if req.path.rstrip("/") != "/v3/scopes":
            return self._answer(req, 404, {"errors": [{"message": "Not found"}]})
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._unauthorized(req)
        return self._answer(req, 200, {"scopes": list(self.scopes)})

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        if req.path.rstrip("/") != "/v3/mail/send":
            return self._answer(req, 404, {"errors": [{"message": "Not found"}]})
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._unauthorized(req)
        try:
            body = json.loads(raw)
            validate_mail_send(body, self.refused_addresses)
        except ValueError:
            return self._answer(req, 400, {"errors": [{"message": "Invalid JSON body"}]})
        except ValidationFailure as exc:
            error = {"message": str(exc), "field": exc.field_name, "help": _help_url(exc)}
            return self._answer(req, 400, {"errors": [error]})
        decision = self._decide()
        if self.latency:
            time.sleep(self.latency)
        if decision == "hang":
            # The mail goes out, but the answer never comes: the client must call it unknown.
            self._accept(body, hung=True)
            time.sleep(self.hang_seconds)
            req.close_connection = True
            return None
        status = int(decision)
        if status == 202:
            message_id = self._accept(body)
            return self._answer(req, 202, None, {"X-Message-Id": message_id})
        headers = {}
        if status == 429:
            headers["X-RateLimit-Reset"] = str(int(time.time() + self.rate_limit_reset))
            headers["X-RateLimit-Limit"] = "600"
            headers["X-RateLimit-Remaining"] = "0"
        message = {429: "too many requests", 500: "internal error", 503: "service unavailable"}
        return self._answer(
            req, status, {"errors": [{"message": message.get(status, "error")}]}, headers
        )

    def _accept(self, body: dict[str, Any], hung: bool = False) -> str:
        message_id = secrets.token_urlsafe(16)
        if not self.record:
            with self._lock:
                self.state.accepted_count += sum(len(p["to"]) for p in body["personalizations"])
                self.state.answers[202] += 0 if hung else 1
            return message_id
        accepted = [
            AcceptedRecipient(
                email=rcpt["email"],
                message_id=message_id,
                subject=p.get("subject") or body.get("subject", ""),
                substitutions=dict(p.get("substitutions") or {}),
                headers=dict(p.get("headers") or {}),
                custom_args=dict(p.get("custom_args") or {}),
                categories=tuple(body.get("categories") or ()),
                hung=hung,
            )
            for p in body["personalizations"]
            for rcpt in p["to"]
        ]
        with self._lock:
            self.state.accepted.extend(accepted)
            self.state.accepted_count += len(accepted)
            self.state.bodies.append(body)
            self.state.answers[202] += 0 if hung else 1
        return message_id

    def _answer(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        if status not in (200, 202):
            with self._lock:
                self.state.answers[status] += 1
        try:
            req.send_response(status)
            for name, value in (headers or {}).items():
                req.send_header(name, value)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            if data:
                req.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting
