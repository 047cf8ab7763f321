"""Transports against real local servers: the fake SendGrid API and an aiosmtpd sink."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from newsletter.substitution import placeholder
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.smtp_sink import SmtpSink
from newsletter.transports.base import (
    Batch,
    Outcome,
    Recipient,
    TransportUnavailable,
)
from newsletter.transports.sendgrid import SendgridTransport, sendgrid_payload
from newsletter.transports.smtp import SmtpTransport

KEY = "SG.test-key"
UNSUB = placeholder("unsubscribe_url")


def make_batch(n: int = 3, **kw: object) -> Batch:
    recipients = [
        Recipient(
            email=f"r{i}@example.org",
            substitutions={UNSUB: f"https://x.test/unsubscribe/t{i}"},
            headers={
                "List-Unsubscribe": f"<https://x.test/unsubscribe/t{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            delivery_id=100 + i,
        )
        for i in range(n)
    ]
    fields: dict[str, object] = {
        "subject": "What's new — April 2026",
        "html": f'<p>Hi</p><a href="{UNSUB}">unsubscribe</a>' + "<p>x</p>\n" * 300,
        "text": f"Hi\nUnsubscribe: {UNSUB}\n",
        "recipients": recipients,
        "from_addr": "ML Foundations <newsletter@example.org>",
        "headers": {"List-Id": '"ML" <ml-foundations.example.org>'},
        "categories": ("2026-04",),
    }
    fields.update(kw)
    return Batch(**fields)  # type: ignore[arg-type]


@pytest.fixture
def fake():
    with FakeSendgrid(KEY) as server:
        yield server


def test_sendgrid_one_request_per_batch_with_personalizations(fake: FakeSendgrid) -> None:
    transport = SendgridTransport(KEY, fake.url)
    results = transport.send_batch(make_batch(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert fake.requests == 1
    message_ids = {r.message_id for r in results}
    assert len(message_ids) == 1 and message_ids != {""}
    assert [r.delivery_id for r in results] == [100, 101, 102]
    body = fake.state.bodies[0]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["2026-04"]
    assert body["from"] == {"email": "newsletter@example.org", "name": "ML Foundations"}
    first = fake.state.accepted[0]
    assert first.email == "r0@example.org"
    assert first.custom_args == {"delivery_id": "100"}
    assert first.substitutions == {UNSUB: "https://x.test/unsubscribe/t0"}
    assert first.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(("status", "outcome"), [(429, Outcome.RETRY), (500, Outcome.RETRY)])
def test_sendgrid_transient_refusals_are_retryable(fake, status, outcome) -> None:
    fake.script.append(status)
    results = SendgridTransport(KEY, fake.url).send_batch(make_batch(2))
    assert {r.outcome for r in results} == {outcome}
    assert fake.accepted_emails == []
    if status == 429:
        assert results[0].retry_after is not None and results[0].retry_after <= 2
    assert f"SendGrid {status}" in results[0].error


def test_sendgrid_bad_request_fails_with_the_providers_message(fake: FakeSendgrid) -> None:
    batch = make_batch(1, recipients=[Recipient(email="not-an-address", delivery_id=1)])
    results = SendgridTransport(KEY, fake.url).send_batch(batch)
    assert results[0].outcome is Outcome.FAILED
    assert "valid address" in results[0].error


def test_sendgrid_wrong_key_makes_the_transport_unavailable(fake: FakeSendgrid) -> None:
    with pytest.raises(TransportUnavailable, match="SENDGRID_API_KEY"):
        SendgridTransport("SG.wrong", fake.url).send_batch(make_batch(1))


def test_sendgrid_timeout_after_sending_is_unknown(fake: FakeSendgrid) -> None:
    fake.hang_seconds = 2.0
    fake.script.append("hang")
    results = SendgridTransport(KEY, fake.url, timeout=0.5).send_batch(make_batch(2))
    assert {r.outcome for r in results} == {Outcome.UNKNOWN}
    assert len(fake.accepted_emails) == 2  # it did go out: exactly why it must not be resent


def test_sendgrid_unreachable_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = SendgridTransport(KEY, f"http://127.0.0.1:{port}", timeout=2).send_batch(
        make_batch(1)
    )
    assert results[0].outcome is Outcome.RETRY


def _post(fake: FakeSendgrid, body: dict, key: str = KEY) -> tuple[int, dict]:
    req = urllib.request.Request(
        fake.url + "/v3/mail/send",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {"X-Message-Id": resp.headers["X-Message-Id"]}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_fake_sendgrid_validates_like_the_real_api(fake: FakeSendgrid) -> None:
    good = sendgrid_payload(make_batch(2))
    status, headers = _post(fake, good)
    assert status == 202 and headers["X-Message-Id"]
    html_first = {**good, "content": list(reversed(good["content"]))}
    assert _post(fake, html_first)[0] == 400
    too_many = {**good, "personalizations": good["personalizations"][:1] * 1001}
    status, body = _post(fake, too_many)
    assert status == 400 and "1000" in body["errors"][0]["message"]
    no_from = {k: v for k, v in good.items() if k != "from"}
    assert _post(fake, no_from)[0] == 400
    big = {
        **good,
        "personalizations": [
            {"to": [{"email": "a@example.org"}], "substitutions": {"-x-": "y" * 10_001}}
        ],
    }
    assert _post(fake, big)[0] == 400
    assert _post(fake, good, key="wrong")[0] == 401
    assert fake.requests == 1  # only the valid, authorised request reached the sender


def test_smtp_per_recipient_outcomes_and_message_shape() -> None:
    with SmtpSink() as sink:
        sink.reject.add("r1@example.org")
        sink.tempfail.add("r2@example.org")
        transport = SmtpTransport(sink.url, timeout=5)
        try:
            results = transport.send_batch(make_batch(4))
            again = transport.send_batch(make_batch(1))  # the pooled connection is reused
        finally:
            transport.close()
        assert [r.outcome for r in results] == [
            Outcome.SENT,
            Outcome.FAILED,
            Outcome.RETRY,
            Outcome.SENT,
        ]
        assert "550" in results[1].error and "451" in results[2].error
        assert again[0].outcome is Outcome.SENT
        received = sink.messages
        assert [m.rcpt_tos for m in received] == [
            ("r0@example.org",),
            ("r3@example.org",),
            ("r0@example.org",),
        ]
        msg = received[0].message
        assert msg["List-Unsubscribe"] == "<https://x.test/unsubscribe/t0>"
        assert msg["List-Id"] == '"ML" <ml-foundations.example.org>'
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert "https://x.test/unsubscribe/t0" in msg.get_body(("plain",)).get_content()
        assert received[0].mail_from == "newsletter@example.org"


def test_smtp_reconnects_after_the_server_drops_the_connection() -> None:
    with SmtpSink() as sink:
        transport = SmtpTransport(sink.url, timeout=5)
        try:
            assert transport.send_batch(make_batch(1))[0].outcome is Outcome.SENT
            transport._local.conn.sock.close()  # the server side went away between batches
            assert transport.send_batch(make_batch(1))[0].outcome is Outcome.SENT
        finally:
            transport.close()
        assert len(sink.messages) == 2


def test_smtp_url_options() -> None:
    secure = SmtpTransport("smtps://user%40x.org:p%3Ass@mail.example.org")
    assert (secure.use_ssl, secure.port, secure.username, secure.password) == (
        True,
        465,
        "user@x.org",
        "p:ss",
    )
    assert not secure.starttls
    plain = SmtpTransport("smtp://mail.example.org:2525?starttls=1")
    assert (plain.use_ssl, plain.port, plain.starttls, plain.username) == (
        False,
        2525,
        True,
        "",
    )


def test_smtp_unreachable_server_retries_the_whole_batch_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=2)
    results = transport.send_batch(make_batch(5))
    assert [r.outcome for r in results] == [Outcome.RETRY] * 5
    assert [r.delivery_id for r in results] == [100, 101, 102, 103, 104]
    assert all("unreachable" in r.error for r in results)
