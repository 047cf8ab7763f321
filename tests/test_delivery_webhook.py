"""The SendGrid event webhook: signatures, de-duplication and suppression."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.models import Delivery, ProviderEvent
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers
from newsletter.web import webhooks
from subscribers.models import ConsentRecord, Subscriber


@pytest.fixture
def keypair():
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode()


@pytest.fixture
def client(settings, engine, keypair):
    from newsletter.web.app import create_app

    # the real app, so the router's wiring and the app's middleware are part of the test
    return TestClient(create_app(settings.model_copy(update={"sendgrid_webhook_key": keypair[1]})))


def signed(private, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        webhooks.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        webhooks.TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }


def test_events_are_recorded_once_and_bad_addresses_suppressed(client, session, keypair):
    topics = issue_topics(session)
    issue = seed_issue(session, "2026-04", topics)
    ids = seed_subscribers(session, 4, [()])
    session.add(Delivery(issue_id=issue.id, subscriber_id=ids[0], status="sent"))
    session.commit()
    delivery_id = session.execute(select(Delivery.id)).scalar_one()
    session.rollback()
    events = [
        {"sg_event_id": "e1", "event": "bounce", "type": "bounce", "reason": "550 no such user",
         "email": "reader000000@example.org", "delivery_id": str(delivery_id)},
        {"sg_event_id": "e2", "event": "spamreport", "email": "reader000001@example.org"},
        {"sg_event_id": "e3", "event": "bounce", "type": "blocked",
         "email": "reader000002@example.org"},
        {"sg_event_id": "e4", "event": "delivered", "email": "reader000003@example.org",
         "delivery_id": "999999"},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    first = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert first.status_code == 200
    assert (first.json()["received"], first.json()["new"], first.json()["suppressed"]) == (4, 4, 2)
    again = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert again.json() == {  # SendGrid repeats
        "received": 4,
        "new": 0,
        "suppressed": 0,
        "unsubscribed": 0,
        "sender_drops": 0,
    }
    statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {
        "reader000000@example.org": "suppressed",
        "reader000001@example.org": "suppressed",
        "reader000002@example.org": "active",  # a temporary block is not a dead address
        "reader000003@example.org": "active",
    }
    stored = {e.provider_event_id: e for e in session.execute(select(ProviderEvent)).scalars()}
    assert set(stored) == {"e1", "e2", "e3", "e4"}
    assert stored["e1"].delivery_id == delivery_id and stored["e4"].delivery_id is None
    session.rollback()


def test_bad_signatures_are_refused(client, keypair):
    body = json.dumps([{"sg_event_id": "x", "event": "bounce", "email": "a@b.org"}]).encode()
    headers = signed(keypair[0], body)
    tampered = body.replace(b"a@b.org", b"c@d.org")
    assert client.post("/webhooks/sendgrid", content=tampered, headers=headers).status_code == 403
    assert client.post("/webhooks/sendgrid", content=body).status_code == 403
    other = ec.generate_private_key(ec.SECP256R1())
    assert (
        client.post("/webhooks/sendgrid", content=body, headers=signed(other, body)).status_code
        == 403
    )


def test_no_key_configured_refuses_everything(client, keypair):
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"sendgrid_webhook_key": ""}
    )
    body = b"[]"
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert response.status_code == 403 and "NEWSLETTER_SENDGRID_WEBHOOK_KEY" in response.text


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "bounce"}', b'[{"event": "bounce"}]', b"[1, 2]"]
)
def test_malformed_bodies_are_400(client, keypair, body):
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert response.status_code == 400


def test_old_signed_events_are_refused(client, keypair):
    """A replayed capture (valid signature, old timestamp) is refused: freshness window."""
    body = json.dumps([{"sg_event_id": "old1", "event": "spamreport", "email": "a@example.org"}])
    stale = str(int(time.time()) - 3600)
    resp = client.post(
        "/webhooks/sendgrid", content=body, headers=signed(keypair[0], body.encode(), stale)
    )
    assert resp.status_code == 403 and "window" in resp.json()["error"]
    future = str(int(time.time()) + 3600)
    resp = client.post(
        "/webhooks/sendgrid", content=body, headers=signed(keypair[0], body.encode(), future)
    )
    assert resp.status_code == 403
    fresh = client.post(
        "/webhooks/sendgrid", content=body, headers=signed(keypair[0], body.encode())
    )
    assert fresh.status_code == 200


EVENTS = Path(__file__).parent / "data" / "sendgrid" / "events.json"


def test_every_event_type_and_drop_reason_does_what_it_should(
    client, session, keypair, settings, cli
):
    """SendGrid's published event examples, one subscriber each: unsubscribes, suppression
    only for reasons about the recipient, sender-side drops counted and sent to the editors."""
    cases = json.loads(EVENTS.read_text())
    topics = issue_topics(session)
    issue = seed_issue(session, "2026-04", topics)
    ids = seed_subscribers(session, len(cases), [()])
    deliveries = [Delivery(issue_id=issue.id, subscriber_id=i, status="sent") for i in ids]
    session.add_all(deliveries)
    session.commit()
    events = []
    for n, (case, delivery) in enumerate(zip(cases, deliveries, strict=True)):
        event = dict(case["event"], email=f"reader{n:06d}@example.org")
        event["delivery_id"] = str(delivery.id)
        events.append(event)
    session.rollback()
    editors = "editor@news.example.org"
    client.app.state.settings = client.app.state.settings.model_copy(update={"editors": editors})
    body = json.dumps(events).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert response.status_code == 200, response.text
    expected = [c["expect"] for c in cases]
    assert response.json() == {
        "received": len(cases),
        "new": len(cases),
        "suppressed": expected.count("suppress"),
        "unsubscribed": expected.count("unsubscribe"),
        "sender_drops": expected.count("sender"),
    }
    statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    want = {"suppress": "suppressed", "unsubscribe": "unsubscribed"}
    for n, case in enumerate(cases):
        email = f"reader{n:06d}@example.org"
        assert statuses[email] == want.get(case["expect"], "active"), (email, case["event"])
    sources = session.execute(
        select(ConsentRecord.source).where(ConsentRecord.action == "unsubscribe")
    ).scalars()
    assert sorted(sources) == ["provider", "provider"]
    session.rollback()
    # The editors were told, once, about the three drops that are ours to fix.
    alerts = list(settings.outbox_dir.glob("*.eml"))
    assert len(alerts) == 1
    alert = alerts[0].read_text()
    assert "To: editor@news.example.org" in alert and "Recipient List over Package Quota" in alert
    status = cli("issue", "status", "2026-04")
    output = " ".join(status.output.split())  # the console wraps long lines
    assert "3 dropped_sender (sendgrid)" in output, output
    assert "1 unsubscribe (sendgrid)" in output and "1 group_unsubscribe (sendgrid)" in output


def test_three_mailbox_unavailable_bounces_in_thirty_days_suppress(client, session, keypair):
    (sub_id,) = seed_subscribers(session, 1, [()])
    session.commit()
    template = next(
        c["event"]
        for c in json.loads(EVENTS.read_text())
        if c["event"].get("bounce_classification") == "Mailbox Unavailable"
    )
    email = "reader000000@example.org"
    for n in range(3):
        # SendGrid reports the address as it was sent; the count ignores its case
        event = dict(template, email=email.upper() if n == 1 else email, sg_event_id=f"full-{n}")
        event.pop("delivery_id")
        body = json.dumps([event]).encode()
        reply = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
        assert reply.json()["suppressed"] == (1 if n == 2 else 0)
    sub = session.get(Subscriber, sub_id)
    assert sub is not None and sub.status == "suppressed"
    assert "3 soft bounces" in sub.suppressed_reason
