"""Per-recipient fields: signed links, placeholder values and list headers.

Everything here is cheap string work done once per subscriber; the body itself is rendered
once per variant and only these values are substituted into it.
"""

from __future__ import annotations

import html
from urllib.parse import quote, urlencode, urlsplit

from itsdangerous import BadData, URLSafeTimedSerializer

from newsletter.models import Issue
from newsletter.rendering.message import header_safe
from newsletter.rendering.variants import EVERYTHING, NO_MATCH
from newsletter.settings import Settings
from newsletter.substitution import check_header_value, placeholder
from newsletter.verp import unsubscribe_address
from subscribers.models import Subscriber
from subscribers.tokens import TokenSigner, make_token, token_signer

# The per-recipient fields an issue body may contain, and their markers (unguessable per
# process, see newsletter.substitution): a provider's body builder reads them from here.
RECIPIENT_FIELDS = ("unsubscribe_url", "preferences_url", "browser_url", "email")
RECIPIENT_MARKERS = {name: placeholder(name) for name in RECIPIENT_FIELDS}
PREVIEW_TOKEN = "PREVIEW-NOT-A-REAL-TOKEN"
PREVIEW_EMAIL = "subscriber@example.org"


def recipient_links(settings: Settings, subscriber: Subscriber) -> dict[str, str]:
    """Signed unsubscribe and preferences URLs for one subscriber (one at a time: a bulk
    send uses `RecipientFields`, which signs both from one payload)."""
    assert subscriber.id is not None, "subscriber must be saved before links are signed"
    return {
        f"{purpose}_url": f"{settings.base_url}/{purpose}/"
        + make_token(settings.secret, purpose, subscriber.public_id, subscriber.token_version)
        for purpose in ("unsubscribe", "preferences")
    }


def browser_url(settings: Settings, issue: Issue, variant: str) -> str:
    """The web version of the issue, showing the same topic selection as the email."""
    url = f"{settings.base_url}/issues/{issue.month}"
    if variant and variant != NO_MATCH:
        url += "?topics=" + quote(variant, safe=",")
    return url


# A test copy's web version: a signed, expiring, read-only link to the draft as that
# revision and topic set showed it; no desk session needed, nothing it can change.
TEST_PREVIEW_SALT = "newsletter.test-preview"
TEST_PREVIEW_MAX_AGE = 14 * 24 * 3600


def test_preview_key(settings: Settings, month: str, revision: int) -> str:
    return URLSafeTimedSerializer(settings.secret, salt=TEST_PREVIEW_SALT).dumps(
        {"m": month, "r": revision}
    )


def read_test_preview_key(settings: Settings, key: str, month: str) -> int | None:
    """The revision a valid, unexpired key for `month` names; None for anything else."""
    try:
        claims = URLSafeTimedSerializer(settings.secret, salt=TEST_PREVIEW_SALT).loads(
            key, max_age=TEST_PREVIEW_MAX_AGE
        )
    except BadData:
        return None
    if not isinstance(claims, dict) or claims.get("m") != month:
        return None
    revision = claims.get("r")
    return revision if isinstance(revision, int) else None


def test_copy_substitutions(
    settings: Settings, issue: Issue, variant: str, email: str
) -> dict[str, str]:
    """A test copy's links: its web version through a signed preview link; its manage and
    unsubscribe links to a page that says it was a test copy and changes nothing."""
    base = settings.base_url
    query = {"key": test_preview_key(settings, issue.month, issue.revision)}
    if variant and variant not in (EVERYTHING, NO_MATCH):
        query["topics"] = variant
    return _fill(
        {
            "unsubscribe_url": f"{base}/test-copy/unsubscribe",
            "preferences_url": f"{base}/test-copy/preferences",
            "browser_url": f"{base}/issues/{issue.month}/preview?{urlencode(query)}",
            "email": email,
        }
    )


def _fill(values: dict[str, str]) -> dict[str, str]:
    return {placeholder(name): html.escape(value, quote=True) for name, value in values.items()}


def recipient_substitutions(
    settings: Settings, subscriber: Subscriber, issue: Issue, variant: str
) -> dict[str, str]:
    """Placeholder -> HTML-safe value for one recipient (also what SendGrid substitutes)."""
    return _fill(
        {
            **recipient_links(settings, subscriber),
            "browser_url": browser_url(settings, issue, variant),
            "email": subscriber.email,
        }
    )


def preview_substitutions(settings: Settings, issue: Issue, variant: str) -> dict[str, str]:
    """Values for a preview: real page URLs with a clearly fake token and address."""
    base = settings.base_url
    return _fill(
        {
            "unsubscribe_url": f"{base}/unsubscribe/{PREVIEW_TOKEN}",
            "preferences_url": f"{base}/preferences/{PREVIEW_TOKEN}",
            "browser_url": browser_url(settings, issue, variant),
            "email": PREVIEW_EMAIL,
        }
    )


class RecipientFields:
    """Per-recipient values of one variant's send, made in a few microseconds a recipient.

    Everything shared by the recipients (link prefixes, markers, the browser link) is worked
    out once; per person only the two tokens are signed (one payload, two MACs) and the
    values put in place. Same values as `recipient_substitutions` and `recipient_headers`.
    """

    def __init__(self, settings: Settings, issue: Issue, variant: str) -> None:
        base = settings.base_url
        self._unsubscribe = token_signer(settings.secret, "unsubscribe")
        self._preferences = token_signer(settings.secret, "preferences")
        self._unsubscribe_prefix = check_header_value("List-Unsubscribe", f"{base}/unsubscribe/")
        self._preferences_prefix = f"{base}/preferences/"
        # Tokens are URL-safe base64 and dots: only the prefixes can need HTML escaping.
        self._unsubscribe_html = html.escape(self._unsubscribe_prefix, quote=True)
        self._preferences_html = html.escape(self._preferences_prefix, quote=True)
        self._browser_html = html.escape(browser_url(settings, issue, variant), quote=True)
        self._keys = tuple(placeholder(name) for name in RECIPIENT_FIELDS)
        # A mailto: only where `bounces fetch` reads the mailbox it reaches.
        self._bounce_address = settings.bounce_address if settings.bounce_imap_url else ""
        self._secret = settings.secret

    def __call__(
        self, subject: int | str, token_version: int, email: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(substitutions, headers) for one recipient; `subject` is the value tokens sign."""
        payload = TokenSigner.payload(subject, token_version)
        unsubscribe = self._unsubscribe.sign_payload(payload)
        preferences = self._preferences.sign_payload(payload)
        k_unsubscribe, k_preferences, k_browser, k_email = self._keys
        substitutions = {
            k_unsubscribe: self._unsubscribe_html + unsubscribe,
            k_preferences: self._preferences_html + preferences,
            k_browser: self._browser_html,
            k_email: html.escape(email, quote=True),
        }
        mailto = _mailto(self._bounce_address, self._secret, subject, token_version)
        headers = {
            "List-Unsubscribe": f"<{self._unsubscribe_prefix}{unsubscribe}>{mailto}",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return substitutions, headers


def _mailto(bounce_address: str, secret: str, subject: int | str, token_version: int) -> str:
    """`, <mailto:…>` after the https URI when a bounce mailbox reads the requests: some
    clients show their unsubscribe button only for a mailto URI (Ghost sends both)."""
    if not bounce_address or not isinstance(subject, str) or not subject:
        return ""
    address = unsubscribe_address(bounce_address, secret, subject, token_version)
    return f", <mailto:{address}?subject=unsubscribe>"


def recipient_headers(settings: Settings, subscriber: Subscriber) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for one recipient (issue mail and welcome).

    With a bounce address and its mailbox (NEWSLETTER_BOUNCE_IMAP_URL), a signed `mailto:`
    follows the https URI: `bounces fetch` reads the mailbox it reaches and unsubscribes the
    sender of a valid request. Without them there is no mailto: an address that silently
    ignores requests is worse than none.
    """
    url = recipient_links(settings, subscriber)["unsubscribe_url"]
    bounce_address = settings.bounce_address if settings.bounce_imap_url else ""
    mailto = _mailto(
        bounce_address, settings.secret, subscriber.public_id, subscriber.token_version
    )
    headers = {
        "List-Unsubscribe": f"<{url}>{mailto}",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return {name: check_header_value(name, value) for name, value in headers.items()}


def list_headers(settings: Settings) -> dict[str, str]:
    """Headers shared by every recipient of a bulk send: RFC 2919 List-Id."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    if settings.base_url_is_loopback or not any(c.isalpha() for c in host):
        host = "localhost"  # an IP address is not a list-id namespace
    name = header_safe(settings.title).replace("\\", "\\\\").replace('"', '\\"')
    value = f'"{name}" <ml-foundations.{host}>'
    return {"List-Id": check_header_value("List-Id", value)}
