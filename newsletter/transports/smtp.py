"""SMTP: one reused connection per sending thread, one SMTP transaction per recipient.

The SMTP replies give per-recipient outcomes: 5xx is a refusal for good, 4xx a refusal for
now. A connection lost before the message data went out is reconnected and retried; lost
while waiting for the answer to DATA, the outcome of that one message is unknown.

With a bounce address the envelope sender (MAIL FROM) of a delivery is that address with a
signed token for the delivery in it (VERP, `newsletter.verp`), so bounces land in a mailbox
`newsletter bounces fetch` reads and prove which delivery they answer. One-off mail (no
delivery row) goes out from the plain bounce address.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.transports.base import (
    Batch,
    Outcome,
    Recipient,
    RecipientResult,
    TransportUnavailable,
    build_mime,
)
from newsletter.verp import verp_address

DEFAULT_TIMEOUT = 30.0
UNREACHABLE = "SMTP server unreachable"
_TRUE = {"1", "true", "yes", "on"}


class _BodyMaybeSent(Exception):
    """The connection broke after DATA began: the message may have been accepted."""


class SmtpTransport:
    name = "smtp"

    def __init__(
        self,
        smtp_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        bounce_address: str = "",
        secret: str = "",
    ) -> None:
        parts = urlsplit(smtp_url)
        self.use_ssl = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.use_ssl else 25)
        self.username = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        query = parse_qs(parts.query)
        self.starttls = (query.get("starttls", ["0"])[0].lower() in _TRUE) and not self.use_ssl
        self.timeout = timeout
        self.bounce_address = bounce_address
        self.secret = secret
        self._local = threading.local()
        self._all_connections: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.use_ssl:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportUnavailable(
                f"SMTP login to {self.host}:{self.port} refused: {exc.smtp_code} "
                f"{exc.smtp_error.decode(errors='replace')} (check NEWSLETTER_SMTP_URL)"
            ) from None
        with self._lock:
            self._all_connections.append(conn)
        return conn

    def _connection(self, *, fresh: bool = False) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                self._drop(conn)
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop(self, conn: smtplib.SMTP) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection
            conn.close()
        with self._lock:
            if conn in self._all_connections:
                self._all_connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        sender = parseaddr(batch.from_addr)[1]
        results: list[RecipientResult] = []
        for i, recipient in enumerate(batch.recipients):
            envelope_from = self.bounce_address or sender
            if self.bounce_address and self.secret and recipient.delivery_id is not None:
                envelope_from = verp_address(
                    self.bounce_address, self.secret, recipient.delivery_id, recipient.email
                )
            result = self._send_one(batch, recipient, envelope_from)
            results.append(result)
            if result.error.startswith(UNREACHABLE):
                # Do not wait out a connect timeout per recipient: the rest waits for a retry.
                results += [
                    RecipientResult(
                        r.email, Outcome.RETRY, error=result.error, delivery_id=r.delivery_id
                    )
                    for r in batch.recipients[i + 1 :]
                ]
                break
        return results

    def _send_one(self, batch: Batch, recipient: Recipient, sender: str) -> RecipientResult:
        def result(outcome: Outcome, error: str = "", message_id: str = "") -> RecipientResult:
            return RecipientResult(
                recipient.email,
                outcome,
                message_id=message_id,
                error=error[:1000],
                delivery_id=recipient.delivery_id,
            )

        try:
            msg = build_mime(batch, recipient)
        except ValueError as exc:
            return result(Outcome.FAILED, str(exc))
        # SMTP lines end in CRLF; smtplib converts bare LFs only in str messages, not bytes.
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        for attempt in (1, 2):  # a stale pooled connection gets one fresh try
            conn: smtplib.SMTP | None = None
            try:
                conn = self._connection(fresh=attempt == 2)
                self._transaction(conn, sender, recipient.email, data)
                return result(Outcome.SENT, message_id=str(msg["Message-ID"]))
            except smtplib.SMTPResponseException as exc:
                text = f"SMTP {exc.smtp_code}: {exc.smtp_error.decode(errors='replace')}"
                if conn is not None:
                    self._reset(conn)
                if 400 <= exc.smtp_code < 500:
                    return result(Outcome.RETRY, text)
                return result(Outcome.FAILED, text)
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                text = f"SMTP {code}: {reply.decode(errors='replace')}"
                if conn is not None:
                    self._reset(conn)
                return result(Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED, text)
            except _BodyMaybeSent as exc:
                if conn is not None:
                    self._drop(conn)
                return result(Outcome.UNKNOWN, f"connection lost after the message was sent: {exc}")
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                if conn is not None:
                    self._drop(conn)
                if attempt == 2:
                    return result(Outcome.RETRY, f"{UNREACHABLE}: {exc}")
        raise AssertionError("unreachable")

    @staticmethod
    def _transaction(conn: smtplib.SMTP, sender: str, rcpt: str, data: bytes) -> None:
        code, reply = conn.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = conn.rcpt(rcpt)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
        try:
            code, reply = conn.data(data)
        except smtplib.SMTPResponseException:
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _BodyMaybeSent(str(exc)) from None
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all_connections = self._all_connections, []
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
        self._local = threading.local()
