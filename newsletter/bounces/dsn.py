"""Reading one message from the bounce mailbox: which recipients failed, hard or soft.

`flufl.bounce` (Mailman's detectors: RFC 3464 DSNs plus the odd formats of older MTAs)
decides whether a message is a bounce at all and for whom; an auto-reply or a person's
answer finds no failure and is left alone. The VERP return path names the recipient
reliably even when the remote DSN names a forwarded address. A DSN `Status` of 4.x.x, or
`Action: delayed`, is a soft bounce (mailbox full, greylisting given up); anything else
that failed is hard.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import message_from_bytes
from email.iterators import typed_subpart_iterator
from email.message import Message
from email.utils import parseaddr

from flufl.bounce import all_failures

from newsletter.delivery.feedback import Bounce
from newsletter.verp import find_verp_recipient


@dataclass(frozen=True)
class _Fields:
    action: str
    status: str
    diagnostic: str


def _dsn_fields(msg: Message) -> dict[str, _Fields]:
    """Per-recipient `Action`, `Status` and `Diagnostic-Code` of every delivery-status part."""
    found: dict[str, _Fields] = {}
    for part in typed_subpart_iterator(msg, "message", "delivery-status"):
        blocks = part.get_payload()  # type: ignore[attr-defined]
        if not isinstance(blocks, list):
            continue
        for block in blocks:
            recipient = block.get("Original-Recipient") or block.get("Final-Recipient") or ""
            address = parseaddr(str(recipient).partition(";")[2].strip())[1].lower()
            if not address:
                continue
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            found[address] = _Fields(
                action=str(block.get("Action", "")).strip().lower(),
                status=str(block.get("Status", "")).strip(),
                diagnostic=diagnostic.removeprefix("smtp;").strip(),
            )
    return found


def _is_soft(fields: _Fields | None, temporary: bool) -> bool:
    if fields is None:
        return temporary
    return fields.action.startswith("delayed") or fields.status.startswith("4.")


def read_bounce(message: Message | bytes, bounce_address: str = "") -> list[Bounce]:
    """The failures one message reports; empty when it is not a bounce."""
    msg = message_from_bytes(message) if isinstance(message, bytes) else message
    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return []
    fields = _dsn_fields(msg)
    message_id = (
        str(msg.get("Message-ID", "")).strip() or hashlib.sha256(msg.as_bytes()).hexdigest()
    )
    reported = {a.decode().lower(): False for a in temporary}
    reported.update({a.decode().lower(): True for a in permanent})
    verp = find_verp_recipient(bounce_address, msg) if bounce_address else None
    if verp:
        # One VERP bounce answers one message to one recipient; the DSN may name a forward.
        permanent_any = any(reported.values())
        first = next(iter(fields.values()), None)
        detail = fields.get(verp.lower(), first)
        reported = {verp.lower(): permanent_any}
        fields = {verp.lower(): detail} if detail else {}
    bounces = []
    for address, is_permanent in sorted(reported.items()):
        detail = fields.get(address)
        bounces.append(
            Bounce(
                event_id=f"{message_id}:{address}",
                email=address,
                hard=not _is_soft(detail, temporary=not is_permanent),
                status=detail.status if detail else "",
                diagnostic=detail.diagnostic if detail else "",
            )
        )
    return bounces
