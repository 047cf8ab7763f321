"""Signed, purpose-scoped tokens for links in emails (confirm, preferences, unsubscribe).

A token names a subscriber by their random `public_id` (never the sequential row id, which
would tell anyone holding a link how big the list is) and their `token_version`; bumping
the version (erase, address change) or rotating the secret invalidates every earlier token.
Tokens for one purpose are useless for another because the purpose is the signing salt.

Tokens are itsdangerous `URLSafeTimedSerializer` tokens. Making one through the serializer
derives the key and builds a signer on every call, which was a third of a bulk send's CPU;
`TokenSigner` writes the very same bytes with the key derived once (`read_token` and every
link already sent stay valid).
"""

from __future__ import annotations

import hashlib
import json
import time
from binascii import b2a_base64
from dataclasses import dataclass
from functools import lru_cache, partial
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import int_to_bytes, want_bytes

# The serializer's JSON: compact, and UTF-8 rather than \u escapes (ensure_ascii=False).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> bytes:
    """itsdangerous' `base64_encode` (URL-safe alphabet, no padding) without its wrappers."""
    return b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


PURPOSES = frozenset({"confirm", "preferences", "unsubscribe", "browser"})


class TokenError(Exception):
    """The token is malformed, tampered with, expired or for another purpose."""


@dataclass(frozen=True)
class TokenClaims:
    public_id: str
    token_version: int
    # Links signed before public ids existed named the row id; they keep working (emails
    # already sent must still unsubscribe), and no new link is made that way.
    legacy_id: int | None = None


@lru_cache(maxsize=64)
def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")


class TokenSigner:
    """Makes the tokens of one purpose, byte for byte what the serializer makes, fast.

    `sign` takes the signed value (the subscriber's public id) as an argument, so what a
    token names can change without touching how it is signed.
    """

    def __init__(self, secret: str, purpose: str) -> None:
        signer = _serializer(secret, purpose).make_signer()
        self._key = signer.derive_key()
        self._digest = signer.digest_method
        self._sep = want_bytes(signer.sep)
        self._inner, self._outer = _hmac_pads(self._key, self._digest)
        self._stamp = (-1, b"")  # (timestamp, its encoded part): one per second, shared

    def _mac(self, value: bytes) -> bytes:
        """HMAC(key, value), the same bytes as `hmac.digest`, from the two padded-key hash
        states prepared once: copying them is a third of the cost of a new HMAC each time."""
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    @staticmethod
    def payload(subject: int | str, token_version: int) -> bytes:
        """The signed part's first half; the same for every purpose, so it can be shared.

        Compact JSON in URL-safe base64, as the serializer writes it. (The serializer would
        zlib-compress a payload that shrinks; these never do, and `loads` reads both forms.)
        """
        if type(token_version) is int:  # the same JSON, written directly
            if type(subject) is str:
                return _b64(f"[{_json_string(subject)},{token_version}]".encode())
            if type(subject) is int:
                return _b64(f"[{subject},{token_version}]".encode("ascii"))
        return _b64(_COMPACT_JSON.encode([subject, token_version]).encode())

    def sign_payload(self, payload: bytes, timestamp: int | None = None) -> str:
        stamp = int(time.time()) if timestamp is None else timestamp
        cached = self._stamp
        if cached[0] != stamp:
            cached = self._stamp = (stamp, self._sep + _b64(int_to_bytes(stamp)))
        value = payload + cached[1]
        return (value + self._sep + _b64(self._mac(value))).decode("ascii")

    def sign(self, subject: int | str, token_version: int, timestamp: int | None = None) -> str:
        return self.sign_payload(self.payload(subject, token_version), timestamp)


def _hmac_pads(key: bytes, digest: object) -> tuple[Any, Any]:
    """The HMAC inner and outer hash states after the padded key (RFC 2104)."""
    new = digest if callable(digest) else partial(hashlib.new, str(digest))
    block = new().block_size
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    return new(bytes(b ^ 0x36 for b in key)), new(bytes(b ^ 0x5C for b in key))


@lru_cache(maxsize=64)
def token_signer(secret: str, purpose: str) -> TokenSigner:
    """The cached signer for one secret and purpose (a rotated secret gets a new one)."""
    return TokenSigner(secret, purpose)


def make_token(secret: str, purpose: str, public_id: str, token_version: int) -> str:
    return token_signer(secret, purpose).sign(public_id, token_version)


def read_token(secret: str, purpose: str, token: str, max_age: int | None = None) -> TokenClaims:
    """Verify a token; raises TokenError with a reason a page can show."""
    try:
        data = _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenError("this link has expired") from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if (
        not isinstance(data, list)
        or len(data) != 2
        or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in data)
        or not isinstance(data[1], int)
    ):
        raise TokenError("this link is not valid")
    if isinstance(data[0], int):
        return TokenClaims(public_id="", token_version=data[1], legacy_id=data[0])
    return TokenClaims(public_id=data[0], token_version=data[1])
