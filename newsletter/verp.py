"""Signed addresses under the bounce address: the VERP return path and the mailto unsubscribe.

The envelope contract between the SMTP transport and the rendering of list headers (which
write these addresses) and the bounce mailbox reader (which reads them back): neutral, so
neither imports the other.

`bounces@news.example.org` sending delivery 1234 to `alice@example.org` uses the return path
`bounces+<public id>.<mac>@news.example.org`: the delivery's public id (its row id through a
keyed 64-bit permutation, so the address tells nobody how many deliveries there were, and
the row is found again without a stored column) and an HMAC, under the secret key, of that
id and the recipient's address. The MTA hands every `bounces+…` address to the
`bounces` mailbox (sub-addressing). Nobody without the key can write a valid one, so a bounce
to it proves we sent that delivery, and the recipient is read from the delivery row, never
from what the bounce claims. The mailto unsubscribe address is
`bounces+u.<public id>.<token version>.<mac>@…`, signed the same way under another purpose.

Both stay within RFC 5321's 64-character local part for a bounce local part of up to
`settings.MAX_BOUNCE_LOCAL` characters (the settings refuse a longer one). The MACs are lower-case
base32 (80 bits): an MTA that folds the local part's case does not break them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import getaddresses
from functools import lru_cache

MAC_CHARS = 16  # base32 characters: 80 bits
MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_VERP_RE = re.compile(r"^(?P<id>[a-z2-7]{13})\.(?P<mac>[a-z2-7]{16})$")
_ROUNDS = 4
_MASK32 = 0xFFFFFFFF
_UNSUB_RE = re.compile(
    r"^u\.(?P<pid>[A-Za-z0-9_-]{1,40})\.(?P<v>[0-9a-z]{1,13})\.(?P<mac>[a-z2-7]{16})$"
)


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError("negative id")
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS[digit] + out
        if not n:
            return out


@lru_cache(maxsize=16)
def _keyed(secret: str, purpose: str) -> hmac.HMAC:
    """An HMAC state with the key and purpose already in: each MAC copies it (the per-call
    key set-up is most of an HMAC's cost for these short messages)."""
    state = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    state.update(f"newsletter.{purpose}".encode())
    return state


def _mac(secret: str, purpose: str, *parts: str) -> str:
    state = _keyed(secret, purpose).copy()
    state.update("".join(f"\x00{p}" for p in parts).encode())
    return base64.b32encode(state.digest()).decode("ascii").lower()[:MAC_CHARS]


def _split(bounce_address: str, address: str) -> str | None:
    """The part after `local+` when `address` is under our bounce address, else None."""
    local, _, domain = bounce_address.rpartition("@")
    got_local, _, got_domain = address.strip().strip("<>").rpartition("@")
    prefix = f"{local}+".lower()
    if not local or got_domain.lower() != domain.lower():
        return None
    if not got_local.lower().startswith(prefix):
        return None
    return got_local[len(prefix) :]


def _round(secret: str, n: int, half: int) -> int:
    state = _keyed(secret, "verp-id").copy()
    state.update(bytes([n]) + half.to_bytes(4, "big"))
    return int.from_bytes(state.digest()[:4], "big")


def delivery_public_id(secret: str, delivery_id: int) -> str:
    """The delivery's id as the return path shows it: a keyed Feistel permutation of the
    64-bit row id, 13 lower-case base32 characters."""
    if not 0 <= delivery_id < 2**64:
        raise ValueError(f"delivery id out of range: {delivery_id}")
    left, right = delivery_id >> 32, delivery_id & _MASK32
    for n in range(_ROUNDS):
        left, right = right, left ^ _round(secret, n, right)
    block = ((left << 32) | right).to_bytes(8, "big") + b"\0\0"  # 80 bits: 16 chars
    return base64.b32encode(block).decode("ascii").lower()[:13]


def delivery_id_from(secret: str, public_id: str) -> int | None:
    """The row id behind a public id (any 13 base32 characters decode to some id; only the
    MAC says whether we made it)."""
    try:
        raw = base64.b32decode(public_id.upper() + "AAA")  # 16 chars: 10 bytes
    except ValueError:
        return None
    value = int.from_bytes(raw[:8], "big")
    left, right = value >> 32, value & _MASK32
    for n in reversed(range(_ROUNDS)):
        left, right = right ^ _round(secret, n, left), left
    return (left << 32) | right


def verp_address(bounce_address: str, secret: str, delivery_id: int, recipient: str) -> str:
    """The envelope sender for one delivery."""
    local, _, domain = bounce_address.rpartition("@")
    token = delivery_public_id(secret, delivery_id)
    return f"{local}+{token}.{_mac(secret, 'verp', token, recipient.lower())}@{domain}"


@dataclass(frozen=True)
class VerpToken:
    """A VERP token as found in a message; not yet checked against the delivery it names."""

    public_id: str
    mac: str

    def delivery_id(self, secret: str) -> int | None:
        return delivery_id_from(secret, self.public_id)

    def names(self, secret: str, recipient: str) -> bool:
        """True when the MAC was made by us for this delivery to this recipient."""
        expected = _mac(secret, "verp", self.public_id, recipient.lower())
        return hmac.compare_digest(expected, self.mac)


def read_verp(bounce_address: str, address: str) -> VerpToken | None:
    """The token of our VERP address `address`, or None when it is not one."""
    rest = _split(bounce_address, address)
    match = _VERP_RE.match(rest.lower()) if rest is not None else None
    if not match:
        return None
    return VerpToken(match["id"], match["mac"])


def unsubscribe_address(
    bounce_address: str, secret: str, public_id: str, token_version: int
) -> str:
    """The `mailto:` unsubscribe address of one subscriber (for List-Unsubscribe)."""
    local, _, domain = bounce_address.rpartition("@")
    version = _base36(token_version)
    mac = _mac(secret, "unsubscribe-mailto", public_id.lower(), version)
    return f"{local}+u.{public_id}.{version}.{mac}@{domain}"


@dataclass(frozen=True)
class UnsubscribeToken:
    public_id: str  # as written; an MTA may have folded its case
    token_version: int
    mac: str

    def valid(self, secret: str) -> bool:
        expected = _mac(
            secret, "unsubscribe-mailto", self.public_id.lower(), _base36(self.token_version)
        )
        return hmac.compare_digest(expected, self.mac)


def read_unsubscribe(bounce_address: str, address: str) -> UnsubscribeToken | None:
    rest = _split(bounce_address, address)
    match = _UNSUB_RE.match(rest) if rest is not None else None
    if not match:
        return None
    return UnsubscribeToken(match["pid"], int(match["v"].lower(), 36), match["mac"].lower())


# Where the MTA writes the address a message was delivered to, then what the sender wrote.
DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc", "Return-Path")


def addresses_in(headers: object, names: tuple[str, ...] = DELIVERY_HEADERS) -> list[str]:
    """Every address in those headers of a message, in that order (a signed token is its
    own proof, so where it was found does not matter; an unsigned one is never believed)."""
    found: list[str] = []
    for name in names:
        values = [str(v) for v in headers.get_all(name, [])]  # type: ignore[attr-defined]
        found += [address for _, address in getaddresses(values) if address]
    return found
