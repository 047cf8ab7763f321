"""One polite HTTP GET for paper sources (arXiv API, feeds): a clear error, never a traceback."""

from __future__ import annotations

import urllib.error
import urllib.request

from newsletter.papers.validation import RecordError

USER_AGENT = "ml-foundations-newsletter/0.1 (monthly digest; one request per 3 s)"


MAX_FEED_BYTES = 20 * 1024 * 1024  # NEWSLETTER_MAX_FEED_BYTES


def http_get(url: str, *, timeout: float, service: str, max_bytes: int = MAX_FEED_BYTES) -> bytes:
    """The body of a 200 answer; `RecordError` naming `service` and the URL otherwise.

    A body past `max_bytes` is refused once that many bytes arrived (announced by
    Content-Length or not), so a runaway or hostile feed never fills the memory.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    too_big = (
        f"{service} sent more than {max_bytes:,} bytes from {url}; "
        "the limit is NEWSLETTER_MAX_FEED_BYTES"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > max_bytes:
                raise RecordError(too_big)
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise RecordError(too_big)
            return body
    except urllib.error.HTTPError as exc:
        raise RecordError(f"{service} answered HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {timeout:g} s"
        raise RecordError(f"cannot reach {service} at {url} ({reason})") from None
