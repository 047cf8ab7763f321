"""The one interface the delivery engine sees: send one batch, get one result per recipient.

A batch is one rendered body (one variant) for up to N recipients. Per-recipient fields are
markers in the body that the transport fills by plain substitution, or hands to the provider
to fill (SendGrid `substitutions`): the contract of `newsletter.substitution`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, make_msgid, parseaddr
from enum import StrEnum
from typing import Protocol

from newsletter.substitution import check_header_value, fill

# Headers whose values are URLs, message ids or addresses: a mail client parses them as they
# stand, so they must never become RFC 2047 encoded words (Gmail does not decode
# `List-Unsubscribe: =?utf-8?q?=3Chttps...` and drops one-click unsubscribe).
RAW_HEADERS = frozenset(
    {"list-unsubscribe", "list-unsubscribe-post", "list-id", "message-id", "reply-to"}
)
MAX_LINE = 998  # RFC 5322 hard limit, CRLF excluded
SOFT_LINE = 78
_LIST_ID_RE = re.compile(r'^"(?P<phrase>.*)" (?P<id><[^<>]+>)$')


def fold_raw(name: str, value: str, linesep: str = "\n") -> str:
    """`Name: value` folded at whitespace only (never inside a URL), no line over 998.

    Raises ValueError for a word that cannot fit a line: better to refuse one message than
    to send a header no client can read.
    """
    lines = [f"{name}:"]
    for word in value.split():
        if len(lines[-1]) + 1 + len(word) > SOFT_LINE and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + word
    if any(len(line) > MAX_LINE for line in lines):
        raise ValueError(f"header {name} has a word longer than {MAX_LINE} characters")
    return linesep.join(lines) + linesep


def _raw_value(name: str, value: str) -> str | None:
    """The value to emit unencoded, or None to leave it to the default policy.

    A non-ASCII display name (Reply-To, the List-Id phrase) is the one part that must be an
    encoded word; the address or id itself always goes out as is.
    """
    key = name.lower()
    if key not in RAW_HEADERS:
        return None
    if value.isascii():
        return value
    match = _LIST_ID_RE.match(value) if key == "list-id" else None
    if match:
        return f"{Header(match['phrase'], 'utf-8').encode()} {match['id']}"
    return None


class WirePolicy(EmailPolicy):
    """The default policy, except that structured headers are folded raw (see RAW_HEADERS)."""

    def fold(self, name: str, value: str) -> str:  # type: ignore[override]
        raw = _raw_value(name, str(value))
        return super().fold(name, value) if raw is None else fold_raw(name, raw, self.linesep)

    def fold_binary(self, name: str, value: str) -> bytes:  # type: ignore[override]
        raw = _raw_value(name, str(value))
        if raw is None:
            return super().fold_binary(name, value)
        return fold_raw(name, raw, self.linesep).encode("ascii")


WIRE_POLICY = WirePolicy()


@dataclass(frozen=True)
class Recipient:
    email: str
    # placeholder -> value, applied to the HTML and text bodies (values already HTML-safe)
    substitutions: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    delivery_id: int | None = None


@dataclass(frozen=True)
class Batch:
    subject: str
    html: str
    text: str
    recipients: Sequence[Recipient]
    from_addr: str
    headers: Mapping[str, str] = field(default_factory=dict)  # shared, e.g. List-Id
    categories: Sequence[str] = ()  # provider tags, e.g. the issue month
    reply_to: str = ""


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # refused for good (bad address, 4xx)
    RETRY = "retry"  # refused for now (429, 5xx, 4xx SMTP reply); safe to send again
    UNKNOWN = "unknown"  # may or may not have gone out; never resent automatically


@dataclass(frozen=True)
class RecipientResult:
    email: str
    outcome: Outcome
    message_id: str = ""
    error: str = ""
    delivery_id: int | None = None
    retry_after: float | None = None  # seconds, when the provider said


class TransportUnavailable(Exception):
    """The transport cannot send at all (bad credentials, refused configuration).

    Raised instead of per-recipient results because retrying will not help: the engine puts
    the batch back untouched and pauses the send with this message for a person to fix.
    """


class Transport(Protocol):
    name: str

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        """Send one batch; never raises for provider answers, reports them per recipient."""
        ...

    def close(self) -> None: ...


def build_mime(batch: Batch, recipient: Recipient, message_id: str | None = None) -> EmailMessage:
    """The RFC 5322 message for one recipient: multipart/alternative, text first, then HTML."""
    msg = EmailMessage(policy=WIRE_POLICY)
    msg["Subject"] = check_header_value("Subject", batch.subject)
    msg["From"] = check_header_value("From", batch.from_addr)
    msg["To"] = check_header_value("To", recipient.email)
    if batch.reply_to:
        msg["Reply-To"] = check_header_value("Reply-To", batch.reply_to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(batch.from_addr)[1].rpartition("@")[2] or "localhost"
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    for name, value in {**batch.headers, **recipient.headers}.items():
        msg[name] = check_header_value(name, value)
    msg.set_content(
        fill(batch.text, recipient.substitutions), subtype="plain", cte="quoted-printable"
    )
    msg.add_alternative(
        fill(batch.html, recipient.substitutions), subtype="html", cte="quoted-printable"
    )
    return msg
