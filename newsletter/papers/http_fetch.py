"""One polite HTTP GET for paper sources (arXiv API, feeds): a clear error, never a traceback."""

from __future__ import annotations

import urllib.error
import urllib.request

from newsletter.papers.validation import RecordError

USER_AGENT = "ml-foundations-newsletter/0.1 (monthly digest; one request per 3 s)"


def http_get(url: str, *, timeout: float, service: str) -> bytes:
    """The body of a 200 answer; `RecordError` naming `service` and the URL otherwise."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as exc:
        raise RecordError(f"{service} answered HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {timeout:g} s"
        raise RecordError(f"cannot reach {service} at {url} ({reason})") from None
