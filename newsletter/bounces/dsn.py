"""Reading one message of the bounce mailbox: what it is, what it claims, and its proofs.

Nothing here touches the database or believes anything: a message says which recipients
failed (hard or soft), or that a reader complained, or asks to unsubscribe, and carries what
may prove it answers a real delivery of ours (signed VERP tokens, the Message-IDs of the
returned message, the unsubscribe link of a reported one). `newsletter.bounces.proof`
checks those against the database; a claim without a proof changes nobody.

What is read:
- Bounces: `flufl.bounce` (Mailman's detectors: RFC 3464 DSNs and the odd formats of older
  MTAs), plus the RFC 3464 / RFC 6533 `message/(global-)delivery-status` parts read here,
  which catch what flufl misses (`utf-8` address types, global DSNs). `Action: failed` is a
  hard bounce whatever the status class (the MTA gave up); `Action: delayed` is soft. A
  message to a signed VERP address that reads like a bounce but has no DSN part (a body
  saying "550 …") is a bounce too, hard for a 5xx code, soft otherwise.
- Complaints: RFC 5965 ARF reports (`message/feedback-report`), with the reported message.
- Unsubscribe requests: any message to a signed `mailto:` unsubscribe address.
- Auto-replies (RFC 3834 `Auto-Submitted`, out-of-office) are never bounces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from newsletter.verp import (
    UnsubscribeToken,
    VerpToken,
    addresses_in,
    read_unsubscribe,
    read_verp,
)

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
RETURNED_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)
_STATUS_RE = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_REPLY_RE = re.compile(r"(?m)^\s*(?:<[^>]*>:?\s*)?.*?\b([45])\d\d[ -]")
_OOO_SUBJECT = re.compile(
    r"\b(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|vacation|"
    r"abwesenheit|absence|away from)\b",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery (status notification|failure|has failed)|returned mail|"
    r"mail delivery (failed|failure|system)|failure notice|could not be delivered|"
    r"delivery problem|nondeliverable|non-delivery)",
    re.IGNORECASE,
)
_DAEMON_FROM = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """One recipient a bounce reports as failed."""

    email: str  # as the bounce names it; "" when only the VERP address says who
    hard: bool
    status: str = ""  # the DSN status code, e.g. 5.1.1
    diagnostic: str = ""


@dataclass(frozen=True)
class Complaint:
    """An RFC 5965 feedback report: a reader marked our message as spam."""

    feedback_type: str  # abuse, fraud, …
    user_agent: str
    original_rcpt: str  # Original-Rcpt-To, or the reported message's To (often redacted)


@dataclass
class Reading:
    """What one message of the bounce mailbox is and claims, with what could prove it."""

    kind: str  # bounce, complaint, unsubscribe, auto_reply, other
    event_id: str  # the message's Message-ID (or a hash of it): a re-read records nothing
    failures: list[Failure] = field(default_factory=list)
    complaint: Complaint | None = None
    verp: list[VerpToken] = field(default_factory=list)  # signed-looking tokens, unchecked
    returned_ids: list[str] = field(default_factory=list)  # Message-IDs of what came back
    returned_to: list[str] = field(default_factory=list)  # To of the returned message
    unsubscribe_urls: list[str] = field(default_factory=list)  # its List-Unsubscribe https URLs
    unsubscribe: UnsubscribeToken | None = None


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (parsed by the email package, or not:
    `message/global-delivery-status` comes as text)."""
    payload = part.get_payload(decode=False)
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, list):  # read as one message: its headers are the first block
        text = "".join(p.as_string() for p in payload if isinstance(p, Message))
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
    text = text.replace("\r\n", "\n")
    return [
        HeaderParser().parsestr(b.strip() + "\n") for b in re.split(r"\n\s*\n", text) if b.strip()
    ]


def _address(value: str) -> str:
    """The address of a `Final-Recipient: type; address` field (rfc822 or utf-8, RFC 6533)."""
    kind, _, rest = value.partition(";")
    if not rest:
        rest = kind  # no address type at all (seen in the wild): `<user@host>`
    rest = re.sub(r"\\x\{([0-9A-Fa-f]{1,6})\}", lambda m: chr(int(m[1], 16)), rest.strip())
    address = parseaddr(rest)[1] or rest.strip("<> ")
    return address.lower() if "@" in address else ""


def dsn_failures(msg: Message) -> list[Failure]:
    """Per-recipient failures of every delivery-status part (RFC 3464 section 2.3)."""
    found: dict[str, Failure] = {}
    for part in msg.walk():
        if part.get_content_type() not in DSN_TYPES:
            continue
        for block in _blocks(part):
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            action = str(block.get("Action", "")).strip().lower()
            if not recipient or not action:
                continue  # the per-message block, or a broken one
            if action.startswith(("fail", "error")):  # OpenSMTPD writes `error`
                hard = True
            elif action.startswith("delayed"):
                hard = False
            else:
                continue  # delivered, relayed, expanded
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            address = _address(recipient)
            found[address] = Failure(
                email=address,
                hard=hard,
                status=str(block.get("Status", "")).strip().split(" ")[0],
                diagnostic=diagnostic.partition(";")[2].strip()
                if ";" in diagnostic
                else diagnostic,
            )
    return list(found.values())


def _returned_headers(msg: Message) -> list[Message]:
    """The headers of the message(s) a bounce or report returns."""
    found: list[Message] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind not in RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found.append(payload[0])
        elif isinstance(payload, str):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
            found.append(HeaderParser().parsestr(text.lstrip()))
    return found


def _is_auto_reply(msg: Message, has_dsn: bool) -> bool:
    """An out-of-office or other RFC 3834 answer, not an MTA's report."""
    if has_dsn or str(msg.get("Content-Type", "")).lower().startswith("multipart/report"):
        return False
    if _DAEMON_FROM.match(parseaddr(str(msg.get("From", "")))[1]):
        return False
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    if _OOO_SUBJECT.search(str(msg.get("Subject", ""))):
        return True
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    return auto.startswith("auto-replied") and not _BOUNCE_SUBJECT.search(
        str(msg.get("Subject", ""))
    )


def _text_of(msg: Message) -> str:
    parts = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                parts.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)


def _body_failure(msg: Message) -> Failure | None:
    """A non-DSN bounce body ("550 5.1.1 user unknown"): only believed for a signed VERP."""
    looks_like_bounce = _BOUNCE_SUBJECT.search(str(msg.get("Subject", ""))) or _DAEMON_FROM.match(
        parseaddr(str(msg.get("From", "")))[1]
    )
    if not looks_like_bounce:
        return None
    text = _text_of(msg)
    status = _STATUS_RE.search(text)
    reply = _REPLY_RE.search(text)
    code = status[1] if status and status[1] in "45" else (reply[1] if reply else "4")
    hard = code == "5"
    line = next((ln.strip() for ln in text.splitlines() if status and status[0] in ln), "")
    return Failure("", hard=hard, status=status[0] if status else "", diagnostic=line[:500])


def _feedback_fields(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return HeaderParser().parsestr(payload.lstrip())
    return None


def read_message(message: Message | bytes, bounce_address: str) -> Reading:
    """What one message of the bounce mailbox is (see the module docstring)."""
    msg = message_from_bytes(message) if isinstance(message, bytes) else message
    message_id = str(msg.get("Message-ID", "")).strip()
    reading = Reading(
        kind="other", event_id=message_id or hashlib.sha256(msg.as_bytes()).hexdigest()
    )
    delivered_to = addresses_in(msg)
    returned = _returned_headers(msg)
    feedback = _feedback_fields(msg)
    if feedback is not None:
        # The reported message's envelope sender (our VERP) is in the report itself.
        candidates = [str(feedback.get("Original-Mail-From", ""))]
        for headers in returned:
            candidates += addresses_in(headers, ("Return-Path",))
    else:
        candidates = delivered_to
    reading.verp = [t for t in (read_verp(bounce_address, a) for a in candidates) if t]
    for headers in returned:
        if headers.get("Message-ID"):
            reading.returned_ids.append(str(headers["Message-ID"]).strip())
        reading.returned_to += [a.lower() for _, a in getaddresses(headers.get_all("To", []))]
        for value in headers.get_all("List-Unsubscribe", []):
            reading.unsubscribe_urls += re.findall(
                r"<(https?://[^>]+)>", " ".join(str(value).split())
            )
    feedback_type = str(feedback.get("Feedback-Type", "")).strip().lower() if feedback else ""
    if feedback is not None and feedback_type != "not-spam":  # RFC 6430: the opposite
        original = str(feedback.get("Original-Rcpt-To", "")).strip()
        reading.kind = "complaint"
        reading.complaint = Complaint(
            feedback_type=feedback_type,
            user_agent=str(feedback.get("User-Agent", "")).strip(),
            original_rcpt=parseaddr(original)[1].lower() or next(iter(reading.returned_to), ""),
        )
        return reading
    if feedback is not None:
        return reading  # a not-spam report: for a person to read
    for address in delivered_to:
        token = read_unsubscribe(bounce_address, address)
        if token:
            reading.kind, reading.unsubscribe = "unsubscribe", token
            return reading
    has_dsn = any(part.get_content_type() in DSN_TYPES for part in msg.walk())
    if _is_auto_reply(msg, has_dsn):
        reading.kind = "auto_reply"
        return reading
    failures = {f.email: f for f in dsn_failures(msg)}
    temporary, permanent = all_failures(msg)
    for raw, hard in [(a, False) for a in temporary] + [(a, True) for a in permanent]:
        address = raw.decode("ascii", "replace").lower()
        if address not in failures:
            failures[address] = Failure(address, hard=hard)
    if not failures and reading.verp:
        body = _body_failure(msg)
        if body:
            failures[""] = body
    if failures:
        reading.kind = "bounce"
        reading.failures = sorted(failures.values(), key=lambda f: f.email)
    return reading
