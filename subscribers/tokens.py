"""Signed, purpose-scoped tokens for links in emails (confirm, preferences, unsubscribe).

A token names a subscriber by their random `public_id` (never the sequential row id, which
would tell anyone holding a link how big the list is) and their `token_version`; bumping
the version (erase, address change) or rotating the secret invalidates every earlier token.
Tokens for one purpose are useless for another because the purpose is the signing salt.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

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


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")


def make_token(secret: str, purpose: str, public_id: str, token_version: int) -> str:
    return _serializer(secret, purpose).dumps([public_id, token_version])


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
