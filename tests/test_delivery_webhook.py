"""The SendGrid event webhook: signatures, de-duplication and suppression."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.models import Delivery, ProviderEvent
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers
from newsletter.web import webhooks
from subscribers.models import Subscriber


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
    assert first.status_code == 200 and first.json() == {"received": 4, "new": 4, "suppressed": 2}
    again = client.post("/webhooks/sendgrid", content=body, headers=signed(keypair[0], body))
    assert again.json() == {"received": 4, "new": 0, "suppressed": 0}  # SendGrid repeats
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
