"""Signed, purpose-scoped tokens for links in emails (confirm, preferences, unsubscribe).

A token names a subscriber and their `token_version`; bumping the version (erase, address
change) or rotating the secret invalidates every earlier token. Tokens for one purpose are
useless for another because the purpose is the signing salt.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

PURPOSES = frozenset({"confirm", "preferences", "unsubscribe", "browser"})


class TokenError(Exception):
    """The token is malformed, tampered with, expired or for another purpose."""


@dataclass(frozen=True)
class TokenClaims:
    subscriber_id: int
    token_version: int


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")


def make_token(secret: str, purpose: str, subscriber_id: int, token_version: int) -> str:
    return _serializer(secret, purpose).dumps([subscriber_id, token_version])


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
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in data)
    ):
        raise TokenError("this link is not valid")
    return TokenClaims(subscriber_id=data[0], token_version=data[1])
