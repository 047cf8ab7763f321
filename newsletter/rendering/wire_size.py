"""How big an HTML part is as it goes out: the figure Gmail's ~102 KB clipping counts.

The size budget (`NEWSLETTER_MAX_EMAIL_KB`) compares with this, so it must count what the
transports send, not the decoded text: quoted-printable adds about 9% to typical issue
HTML (inbox review 2026-12, P1).
"""

from __future__ import annotations

import binascii

from newsletter.substitution import placeholder

# What one recipient's values can be at most, in place of the markers they replace: a link
# (base URL, path and signed token) and an address (RFC 5321's 254 characters).
MAX_LINK_CHARS = 250
MAX_ADDRESS_CHARS = 254
_WORST_CASE = {
    placeholder("unsubscribe_url"): "x" * MAX_LINK_CHARS,
    placeholder("preferences_url"): "x" * MAX_LINK_CHARS,
    placeholder("browser_url"): "x" * MAX_LINK_CHARS,
    placeholder("email"): "x" * MAX_ADDRESS_CHARS,
}


def html_size(html: str) -> int:
    """Bytes of the HTML part as sent, the figure Gmail's ~102 KB clipping goes by: UTF-8,
    quoted-printable (what the transports write), CRLF line ends, and each per-recipient
    marker standing for the longest value it can take.

    `binascii.b2a_qp` (C, about 7x faster than the email package's encoder, which matters
    inside the budget's bisection) breaks lines at 76 characters where the email package
    breaks at 78, so it counts a few bytes more than go out: an upper bound
    (tests/test_inbox_wire.py compares it with the bytes on the SMTP wire).
    """
    for marker, value in _WORST_CASE.items():
        html = html.replace(marker, value)
    data = b"\n".join(html.encode("utf-8").splitlines()) + b"\n"
    encoded = binascii.b2a_qp(data, istext=True)
    return len(encoded) + encoded.count(b"\n")  # CRLF: one more byte per line
