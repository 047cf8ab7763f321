"""How the web app is served: uvicorn with the proxies we trust, and logs without secrets."""

from __future__ import annotations

import logging
import re
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from newsletter.settings import Settings

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]*", re.IGNORECASE)
# Paths whose last segment is a secret: the desk sign-in link (not its token form) and
# every subscriber link. Mail scanners open them before people do; a log reader must not
# be able to replay them.
_SECRET_IN_PATH = re.compile(
    r"(/admin/sign-in/)(?!token(?:[/?\s\"]|$))[^/?\s\"]+"
    r"|(/(?:confirm|preferences|unsubscribe|resubscribe)/)[^/?\s\"]+"
)


def redact(text: str) -> str:
    """`text` with every secret a request line can carry replaced by `[redacted]`."""
    text = _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)
    return _SECRET_IN_PATH.sub(lambda m: f"{m.group(1) or m.group(2)}[redacted]", text)


class RedactTokenFilter(logging.Filter):
    """Access-log lines carry no secret: `?token=[redacted]` (the admin token), and
    `[redacted]` for the sign-in link's secret and subscriber tokens in paths."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


_REDACT = RedactTokenFilter()


def uvicorn_config(
    app: ASGIApp, settings: Settings, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration `newsletter serve` and the test server share.

    Forwarded client addresses (`X-Forwarded-For`, `X-Forwarded-Proto`) are believed only
    from NEWSLETTER_TRUSTED_PROXIES, so a visitor cannot choose the address the rate limit
    and consent records see; behind a platform router, list the router (or `*` when only
    the router can reach the app).
    """
    options.setdefault("log_level", "info")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        **options,
    )
    # Config configures logging when it is built; the filter goes on afterwards.
    logger = logging.getLogger("uvicorn.access")
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)
    return config
