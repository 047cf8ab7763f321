"""`newsletter doctor`: is this configuration and sending domain ready for bulk mail?

Gmail's and Yahoo's bulk-sender rules want SPF or DKIM aligned with the From domain, a
DMARC record and one-click unsubscribe; CAN-SPAM wants a postal address. Each check says
ok, warn or fail and, when not ok, what to change. The fast checks read only the settings
(`issue send` runs them before every send); the others ask DNS and the mail provider.
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.doctor import configuration, credentials, domain
from newsletter.doctor.checks import Check, Level
from newsletter.settings import Settings

__all__ = [
    "Check",
    "Level",
    "failures",
    "fast_checks",
    "network_checks",
    "preflight_checks",
    "run_doctor",
]


def fast_checks(settings: Settings) -> list[Check]:
    """Checks that read only the configuration (no network)."""
    return [check(settings) for check in configuration.FAST_CHECKS]


def preflight_checks(settings: Settings) -> list[Check]:
    """The fast checks `issue send` runs before every send; a fail refuses the send."""
    return [check(settings) for check in configuration.PREFLIGHT_CHECKS]


def network_checks(settings: Settings) -> list[Check]:
    """DNS records of the sending domain and the provider's answer to our credentials."""
    checks: list[Callable[[Settings], list[Check]]] = [domain.domain_checks]
    return [c for group in checks for c in group(settings)] + [
        credentials.backend_credentials(settings)
    ]


def run_doctor(settings: Settings) -> list[Check]:
    return fast_checks(settings) + network_checks(settings)


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == Level.FAIL]
