"""Checks of the settings alone: From address, base URL, postal address, secret key and the
List-Unsubscribe header as it goes out on the wire."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.utils import parseaddr
from urllib.parse import urlsplit

from newsletter.doctor.checks import Check, fail, ok, warn
from newsletter.rendering.recipients import list_headers, recipient_headers
from newsletter.settings import Settings
from newsletter.transports.base import Batch, Recipient, build_mime
from subscribers.models import Subscriber

MIN_SECRET_LENGTH = 32
GENERATE_SECRET = (
    "set NEWSLETTER_SECRET_KEY to the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
)
LOCAL_DOMAINS = {"localhost", "localdomain", "local", "example", "invalid", "test"}


def from_domain(settings: Settings) -> str:
    """The From domain as DNS names it (a trailing root dot dropped)."""
    return settings.from_domain.rstrip(".")


def is_local_domain(domain: str) -> bool:
    return not domain or "." not in domain or domain.rsplit(".", 1)[1] in LOCAL_DOMAINS


def check_from(settings: Settings) -> Check:
    name = "From address"
    address = parseaddr(settings.from_)[1]
    if "@" not in address:
        return fail(
            name,
            f"{settings.from_!r} has no address",
            "set NEWSLETTER_FROM='Name <news@your-domain>'",
        )
    domain = from_domain(settings)
    if is_local_domain(domain):
        return warn(
            name,
            f"{address} is not at a public domain: fine for a local trial, refused by receivers",
            "set NEWSLETTER_FROM to an address at your sending domain",
        )
    return ok(name, address)


def check_base_url(settings: Settings) -> Check:
    name = "base URL"
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    if settings.base_url_is_loopback:
        return warn(
            name,
            f"{settings.base_url} is this machine: subscribers cannot follow the email's links",
            "set NEWSLETTER_BASE_URL to the public https origin of the web app",
        )
    if parts.scheme != "https":
        return fail(
            name,
            f"{settings.base_url} is not https: unsubscribe links would travel in clear text",
            f"serve the web app over TLS and set NEWSLETTER_BASE_URL=https://{parts.netloc}",
        )
    if not re.search(r"[a-z]", host.rsplit(".", 1)[-1]):
        return warn(
            name,
            f"{host} is an IP address: links to bare addresses look like phishing to filters",
            "give the web app a DNS name and use it in NEWSLETTER_BASE_URL",
        )
    return ok(name, settings.base_url)


def check_postal_address(settings: Settings) -> Check:
    name = "postal address"
    if not settings.postal_address.strip():
        return fail(
            name,
            "NEWSLETTER_POSTAL_ADDRESS is not set; bulk mail must show one (CAN-SPAM)",
            "set NEWSLETTER_POSTAL_ADDRESS to the sender's postal address",
        )
    return ok(name, settings.postal_address.strip())


def check_secret_key(settings: Settings) -> Check:
    name = "secret key"
    key = settings.secret_key
    if not key:
        return warn(
            name,
            "not set: a key generated into var/secret_key signs the links (local use only)",
            GENERATE_SECRET,
        )
    if len(key) < MIN_SECRET_LENGTH or len(set(key)) < 12:
        return fail(
            name,
            f"NEWSLETTER_SECRET_KEY is weak ({len(key)} characters, {len(set(key))} distinct): "
            "unsubscribe and preference links could be forged",
            GENERATE_SECRET,
        )
    return ok(name, f"{len(key)} characters")


def check_list_unsubscribe(settings: Settings) -> Check:
    """Render a real message and read the header back from its bytes, as a receiver does."""
    name = "List-Unsubscribe"
    probe = Subscriber(id=1, email="probe@example.org", token_version=1)
    try:
        recipient = Recipient(probe.email, headers=recipient_headers(settings, probe))
        batch = Batch(
            subject=settings.title,
            html="<p>probe</p>",
            text="probe",
            recipients=[recipient],
            from_addr=settings.from_,
            headers=list_headers(settings),
        )
        msg = build_mime(batch, recipient)
        # Serialised exactly as the SMTP transport puts it on the wire (outbox: same policy).
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    except ValueError as exc:
        return fail(
            name,
            f"the headers cannot be built: {exc}",
            "check NEWSLETTER_FROM and NEWSLETTER_TITLE",
        )
    return read_list_unsubscribe(data, settings.base_url)


def read_list_unsubscribe(data: bytes, base_url: str) -> Check:
    """Judge the List-Unsubscribe headers of a serialised message, as a receiver reads them."""
    name = "List-Unsubscribe"
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", errors="replace")
    raw = re.search(r"^List-Unsubscribe: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE)
    post = re.search(r"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r?$", head, re.MULTILINE)
    value = re.sub(r"\r\n[ \t]", " ", raw.group(1)) if raw else ""
    if not raw or "=?" in value or not value.startswith(f"<{base_url}/unsubscribe/"):
        return fail(
            name,
            f"the header goes out as {value[:80]!r}, not a raw <{base_url}/unsubscribe/…>",
            "report this as a bug: receivers ignore an encoded or malformed header",
        )
    if not re.fullmatch(r"<[^<>\s]+>(?:, ?<[^<>\s]+>)*", value):
        return fail(
            name, f"the header is folded or unterminated: {value[:80]!r}", "report this as a bug"
        )
    if post is None:
        return fail(
            name, "List-Unsubscribe-Post is missing (RFC 8058 one-click)", "report this as a bug"
        )
    if not value.startswith("<https://"):
        return warn(
            name,
            f"one-click unsubscribe needs https; the header is {value[:60]}…",
            "set NEWSLETTER_BASE_URL to the public https origin",
        )
    mailto = ", plus a signed mailto:" if "<mailto:" in value else ""
    return ok(name, f"{value[:60]}… raw, with one-click POST{mailto}")


FAST_CHECKS: list[Callable[[Settings], Check]] = [
    check_from,
    check_base_url,
    check_postal_address,
    check_secret_key,
    check_list_unsubscribe,
]
# What `issue send` runs before sending: everything that needs no network.
PREFLIGHT_CHECKS = FAST_CHECKS
