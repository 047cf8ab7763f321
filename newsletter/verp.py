"""VERP: the recipient written into the envelope sender, so a bounce names who bounced.

The envelope contract between the SMTP transport (which writes these addresses) and the
bounce reader (which reads them back): neutral, so neither imports the other.

`bounces@news.example.org` sending to `alice@example.org` uses the return path
`bounces+alice=example.org@news.example.org` (Mailman's format). The MTA hands every
`bounces+…` address to the `bounces` mailbox (sub-addressing), and a bounce arriving there
names the recipient even when the remote server's DSN does not.
"""

from __future__ import annotations

from email.utils import getaddresses


def verp_address(bounce_address: str, recipient: str) -> str:
    """The envelope sender for one recipient."""
    local, _, domain = bounce_address.rpartition("@")
    mailbox, _, host = recipient.rpartition("@")
    return f"{local}+{mailbox}={host}@{domain}"


def verp_recipient(bounce_address: str, address: str) -> str | None:
    """The recipient encoded in `address`, or None when it is not our VERP address."""
    local, _, domain = bounce_address.rpartition("@")
    got_local, _, got_domain = address.strip().strip("<>").rpartition("@")
    prefix = f"{local}+".lower()
    if got_domain.lower() != domain.lower() or not got_local.lower().startswith(prefix):
        return None
    mailbox, eq, host = got_local[len(prefix) :].rpartition("=")
    if not eq or not mailbox or not host:
        return None
    return f"{mailbox}@{host}"


# Where the VERP address shows up in a bounce: the MTA's delivery headers, or To:.
_VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path")


def find_verp_recipient(bounce_address: str, headers: object) -> str | None:
    """The first recipient encoded in a delivery header of a received message."""
    for name in _VERP_HEADERS:
        values = [str(v) for v in headers.get_all(name, [])]  # type: ignore[attr-defined]
        for _, address in getaddresses(values):
            found = verp_recipient(bounce_address, address)
            if found:
                return found
    return None
