"""Does the configured backend accept our credentials? Asked the cheapest way each offers:
SendGrid's `GET /v3/scopes` (401 on a bad key, and it lists whether the key may send), an
SMTP relay's EHLO and login."""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

from newsletter.doctor.checks import Check, fail, ok, warn
from newsletter.settings import Settings

TIMEOUT = 10.0


def check_sendgrid(settings: Settings) -> Check:
    name = "SendGrid API key"
    request = urllib.request.Request(
        f"{settings.sendgrid_host}/v3/scopes",
        headers={"Authorization": f"Bearer {settings.sendgrid_api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            scopes = json.load(response).get("scopes", [])
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return fail(
                name,
                f"{settings.sendgrid_host} refused the key ({exc.code})",
                "create an API key with Mail Send permission and set SENDGRID_API_KEY",
            )
        return fail(name, f"{settings.sendgrid_host} answered {exc.code}", "try again later")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail(
            name,
            f"{settings.sendgrid_host} unreachable: {reason}",
            "check NEWSLETTER_SENDGRID_HOST",
        )
    if "mail.send" not in scopes:
        return fail(
            name,
            "the key is valid but may not send mail (no mail.send scope)",
            "give the key Mail Send permission",
        )
    return ok(name, f"accepted by {settings.sendgrid_host}, may send mail")


def check_smtp(settings: Settings) -> Check:
    name = "SMTP relay"
    parts = urlsplit(settings.smtp_url)
    host, secure = parts.hostname or "localhost", parts.scheme == "smtps"
    port = parts.port or (465 if secure else 25)
    where = f"{host}:{port}"
    try:
        if secure:
            conn = smtplib.SMTP_SSL(
                host, port, timeout=TIMEOUT, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with conn:
            conn.ehlo()
            if "starttls=1" in parts.query and not secure:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if parts.username:
                conn.login(unquote(parts.username), unquote(parts.password or ""))
    except smtplib.SMTPAuthenticationError as exc:
        return fail(
            name, f"{where} refused the login ({exc.smtp_code})", "check NEWSLETTER_SMTP_URL"
        )
    except (smtplib.SMTPException, OSError) as exc:
        return fail(name, f"{where} unreachable: {exc}", "check NEWSLETTER_SMTP_URL")
    login = "login accepted" if parts.username else "no login configured"
    if not settings.bounce_address or not settings.bounce_imap_url:
        return warn(
            name,
            f"{where} answers ({login}), but bounces are not read: dead addresses stay mailed",
            "set NEWSLETTER_BOUNCE_ADDRESS and NEWSLETTER_BOUNCE_IMAP_URL",
        )
    return ok(name, f"{where} answers, {login}")


def backend_credentials(settings: Settings) -> Check:
    if settings.mail_backend == "sendgrid":
        return check_sendgrid(settings)
    if settings.mail_backend == "smtp":
        return check_smtp(settings)
    return warn(
        "mail backend",
        "outbox writes .eml files: nobody receives anything",
        "set NEWSLETTER_MAIL_BACKEND to smtp or sendgrid",
    )
