"""The domain pre-flight of a send: doctor's DNS checks, cached for a day.

`issue send` and the monthly job run it for the SMTP and SendGrid backends (the outbox
mails nobody; a local From domain is `require_public_sender`'s business). A definite fail
(no DMARC record, SPF not authorising the backend, a From domain that does not exist)
refuses the send unless forced; a DNS server that does not answer is only a warning, and
is not cached, so the next send asks again. Results are cached in `var/preflight-dns.json`
for `CACHE_HOURS`, keyed on everything the checks read, so a changed setting asks again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from newsletter.doctor import domain
from newsletter.doctor.checks import Check, Level
from newsletter.doctor.configuration import from_domain, is_local_domain
from newsletter.settings import Settings
from newsletter.transports import notify_editors

CACHE_HOURS = 24
CACHE_FILE = "preflight-dns.json"
BACKENDS = ("smtp", "sendgrid")


@dataclass(frozen=True)
class DomainPreflight:
    checks: list[Check] = field(default_factory=list)
    cached: bool = False

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.level == Level.FAIL]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.level == Level.WARN]


def _key(settings: Settings) -> str:
    smtp_host = settings.smtp_url.rpartition("@")[2]  # never the password
    parts = (
        from_domain(settings),
        settings.mail_backend,
        settings.bounce_address,
        smtp_host,
        settings.dns_server,
    )
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def domain_preflight(settings: Settings, *, now: datetime | None = None) -> DomainPreflight:
    """The send's domain checks, from the cache when they ran in the last `CACHE_HOURS`."""
    if settings.mail_backend not in BACKENDS or is_local_domain(from_domain(settings)):
        return DomainPreflight()
    now = now or datetime.now(UTC)
    path = settings.var_dir / CACHE_FILE
    key = _key(settings)
    try:
        stored = json.loads(path.read_text())
        at = datetime.fromisoformat(stored["at"])
        if stored["key"] == key and timedelta(0) <= now - at < timedelta(hours=CACHE_HOURS):
            checks = [
                Check(c["name"], Level(c["level"]), c["message"], c["fix"])
                for c in stored["checks"]
            ]
            return DomainPreflight(checks, cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache, or one from another version: ask DNS
    checks = domain.send_checks(settings)
    if not any(c.name == "DNS" for c in checks):  # DNS answered: worth keeping
        data = {"key": key, "at": now.isoformat(), "checks": [asdict(c) for c in checks]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    return DomainPreflight(checks)


def forget(settings: Settings) -> None:
    """Drop the cache (after fixing DNS, `doctor` passing): the next send asks again."""
    (settings.var_dir / CACHE_FILE).unlink(missing_ok=True)


def refuse_send(settings: Settings, month: str, failures: list[Check], who: str) -> str:
    """Mail the editors why `who` (the monthly job, a scheduled send) did not send `month`;
    returns the job run's message."""
    lines = [c.line().removeprefix("fail  ") for c in failures]
    notify_editors(
        settings,
        f"Issue {month} not sent: the sending domain fails its checks",
        f"{who} did not send {month}:\n\n"
        + "\n".join(lines)
        + f"\n\nFix the records (`newsletter doctor`), then `newsletter issue send {month}`"
        " (or `--force` to send as it is, audited).",
    )
    return (
        f"not sent: {'; '.join(lines)}; fix it and run `newsletter issue send {month}` "
        "(editors mailed)"
    )
