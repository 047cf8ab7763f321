"""The audience domain on its own: lifecycle, consent, tokens, CSV, and the CLI over it."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from newsletter import audience
from newsletter.models import Delivery, Issue
from subscribers import csv_io, lifecycle
from subscribers.models import ConsentRecord, Subscriber, SubscriberTopic
from subscribers.tokens import TokenError, make_token, read_token

REPO = Path(__file__).resolve().parent.parent
KNOWN = {"optimization", "transformers", "graph-learning", "general"}


def subscribe(session: Session, email: str, topics=(), **kw) -> lifecycle.SubscribeResult:
    return lifecycle.subscribe(
        session, email, topics, known_topics=KNOWN, consent_text_version="v1", **kw
    )


def consent_actions(session: Session, sub: Subscriber) -> list[str]:
    rows = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == sub.id)
        .order_by(ConsentRecord.id)
    ).all()
    return [r.action for r in rows]


def test_subscribers_package_imports_nothing_from_newsletter() -> None:
    for path in (REPO / "subscribers").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "newsletter" or n.startswith("newsletter.") for n in names), path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada@Example.ORG ", "ada@example.org"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_normalize_email_accepts(raw: str, expected: str) -> None:
    assert lifecycle.normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "no-at-sign",
        "a@b",
        "a@@b.com",
        "a@b.com\r\nBcc: x@evil.example",
        "a@b.com\nBcc: x",
        "x" * 65 + "@example.org",
        "a@" + "b" * 320 + ".com",
        "<a@b.com>",
    ],
)
def test_normalize_email_refuses(raw: str) -> None:
    with pytest.raises(lifecycle.InvalidEmail):
        lifecycle.normalize_email(raw)


def test_double_opt_in_with_consent_record(session: Session) -> None:
    result = subscribe(
        session, "Ada@Example.org", ["transformers", "optimization"], client_address="203.0.113.7"
    )
    session.commit()
    sub = result.subscriber
    assert result.send_confirmation and result.reason == "new"
    assert sub.status == "pending" and sub.email == "ada@example.org"
    assert lifecycle.topics_of(session, sub) == ["optimization", "transformers"]
    assert lifecycle.confirm(session, sub, client_address="203.0.113.8", consent_text_version="v1")
    session.commit()
    assert sub.status == "active" and sub.confirmed_at is not None
    record = session.exec(
        select(ConsentRecord).where(
            ConsentRecord.subscriber_id == sub.id, ConsentRecord.action == "confirm"
        )
    ).one()
    assert (record.client_address, record.consent_text_version) == ("203.0.113.8", "v1")
    assert record.at is not None
    # Confirming again changes nothing and records nothing.
    assert not lifecycle.confirm(session, sub)
    assert consent_actions(session, sub) == ["subscribe", "confirm"]


def test_unknown_topics_refused_and_nothing_written(session: Session) -> None:
    with pytest.raises(lifecycle.UnknownTopics, match="'nope'"):
        subscribe(session, "a@example.org", ["optimization", "nope"])
    session.rollback()
    assert session.exec(select(Subscriber)).all() == []


def test_three_confirmation_emails_per_address_per_day(session: Session) -> None:
    day = datetime(2026, 4, 1, 12, tzinfo=UTC)
    sends = [subscribe(session, "a@example.org", now=day).send_confirmation for _ in range(5)]
    assert sends == [True, True, True, False, False]
    assert subscribe(session, "a@example.org", now=day + timedelta(days=1)).send_confirmation


def test_active_subscriber_keeps_topics_when_a_stranger_resubmits(session: Session) -> None:
    sub = subscribe(session, "a@example.org", ["optimization"]).subscriber
    lifecycle.confirm(session, sub)
    again = subscribe(session, "a@example.org", ["graph-learning"])
    assert again.reason == "already-subscribed" and sub.status == "active"
    assert lifecycle.topics_of(session, sub) == ["optimization"]


def test_unsubscribed_address_must_confirm_again(session: Session) -> None:
    sub = subscribe(session, "a@example.org", ["optimization"]).subscriber
    lifecycle.confirm(session, sub)
    assert lifecycle.unsubscribe(session, sub)
    assert not lifecycle.unsubscribe(session, sub)  # idempotent
    result = subscribe(session, "a@example.org", ["transformers"])
    assert result.send_confirmation and sub.status == "pending"
    assert lifecycle.topics_of(session, sub) == ["transformers"]


def test_old_confirmation_link_cannot_reactivate_an_unsubscribed_person(session) -> None:
    sub = subscribe(session, "a@example.org").subscriber
    lifecycle.confirm(session, sub)
    lifecycle.unsubscribe(session, sub)
    with pytest.raises(lifecycle.NotSubscribed):
        lifecycle.confirm(session, sub)


def test_suppressed_address_is_never_mailed(session: Session) -> None:
    sub = subscribe(session, "a@example.org").subscriber
    lifecycle.confirm(session, sub)
    assert lifecycle.suppress(session, "A@example.org", "bounce")
    assert not lifecycle.suppress(session, "nobody@example.org", "bounce")
    result = subscribe(session, "a@example.org")
    assert not result.send_confirmation and sub.status == "suppressed"
    assert not lifecycle.unsubscribe(session, sub)  # suppression is kept


def test_pause_and_resume(session: Session) -> None:
    sub = subscribe(session, "a@example.org").subscriber
    assert not lifecycle.pause(session, sub)  # pending cannot pause
    lifecycle.confirm(session, sub)
    assert lifecycle.pause(session, sub) and sub.status == "paused"
    assert lifecycle.resume(session, sub) and sub.status == "active"


def test_erase_removes_everything_and_invalidates_links(session: Session, settings) -> None:
    sub = subscribe(session, "a@example.org", ["optimization"]).subscriber
    lifecycle.confirm(session, sub)
    issue = Issue(month="2026-04")
    session.add(issue)
    session.flush()
    session.add(Delivery(issue_id=issue.id, subscriber_id=sub.id))
    session.commit()
    token = make_token(settings.secret, "preferences", sub.public_id, sub.token_version)
    claims = read_token(settings.secret, "preferences", token)
    assert lifecycle.erase(session, "A@example.org", suppression_key=b"k" * 32)
    session.commit()
    assert session.exec(select(Subscriber)).all() == []
    assert session.exec(select(SubscriberTopic)).all() == []
    assert session.exec(select(ConsentRecord)).all() == []
    assert session.exec(select(Delivery)).all() == []
    with pytest.raises(lifecycle.NotSubscribed):
        lifecycle.from_token(session, claims)
    # Someone new with the same address (and possibly the same reused id) is not matched.
    newcomer = subscribe(session, "a@example.org").subscriber
    session.commit()
    assert newcomer.public_id != claims.public_id
    with pytest.raises(lifecycle.NotSubscribed):
        lifecycle.from_token(session, claims)
    assert not lifecycle.erase(session, "gone@example.org", suppression_key=b"k" * 32)


def test_tokens_are_scoped_and_secret_bound(settings) -> None:
    token = make_token(settings.secret, "unsubscribe", "pub-id-7", 3)
    assert read_token(settings.secret, "unsubscribe", token).public_id == "pub-id-7"
    with pytest.raises(TokenError):
        read_token(settings.secret, "preferences", token)
    with pytest.raises(TokenError):
        read_token("another-secret-after-rotation", "unsubscribe", token)
    with pytest.raises(TokenError):
        read_token(
            settings.secret, "unsubscribe", token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        )


def test_cached_signer_makes_the_serializers_exact_tokens(settings) -> None:
    """The fast signer writes what itsdangerous writes, so links verify as they always did."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    from subscribers.tokens import token_signer

    class At(TimestampSigner):
        def get_timestamp(self) -> int:
            return 1_790_000_000

    for purpose in ("unsubscribe", "preferences"):
        reference = URLSafeTimedSerializer(settings.secret, salt=f"newsletter.{purpose}", signer=At)
        for subject in (7, 123_456, "r4nd0m-Public_Id", 'quote " slash \\ é ✓', ""):
            expected = reference.dumps([subject, 3])
            assert token_signer(settings.secret, purpose).sign(subject, 3, 1_790_000_000) == (
                expected
            )
        token = make_token(settings.secret, purpose, "r4nd0m-Public_Id", 3)
        claims = read_token(settings.secret, purpose, token, max_age=60)
        assert claims.public_id == "r4nd0m-Public_Id"
    assert token_signer(settings.secret, "unsubscribe") is token_signer(
        settings.secret, "unsubscribe"
    )
    assert token_signer("rotated", "unsubscribe") is not token_signer(
        settings.secret, "unsubscribe"
    )


def test_export_one_person(session: Session) -> None:
    sub = subscribe(session, "a@example.org", ["optimization"], client_address="198.51.100.1")
    lifecycle.confirm(session, sub.subscriber, client_address="198.51.100.2")
    data = lifecycle.export(session, "a@example.org")
    json.dumps(data)
    assert data["email"] == "a@example.org" and data["topics"] == ["optimization"]
    assert [c["action"] for c in data["consent"]] == ["subscribe", "confirm"]
    assert data["consent"][1]["client_address"] == "198.51.100.2"
    with pytest.raises(lifecycle.NotSubscribed):
        lifecycle.export(session, "b@example.org")


def test_csv_import_is_all_or_nothing_and_names_row_and_column(engine, settings) -> None:
    text = (
        "email,topics,name\n"
        "ok@example.org,optimization;transformers,Ok\n"
        "not-an-address,,\n"
        "two@example.org,optimization;nope,\n"
        "OK@example.org,,dup\n"
    )
    with pytest.raises(csv_io.CsvImportError) as info:
        audience.import_subscribers(engine, settings, text, confirmed=True)
    message = str(info.value)
    assert "row 3, column 'email'" in message
    assert "row 4, column 'topics'" in message and "'nope'" in message
    assert "row 5, column 'email'" in message and "repeats row 2" in message
    with Session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []
    with pytest.raises(csv_io.CsvImportError, match="row 1, column 'emial'"):
        audience.import_subscribers(
            engine, settings, "email,emial\nx@example.org,\n", confirmed=True
        )
    with pytest.raises(csv_io.CsvImportError, match="row 1: the header needs an 'email'"):
        audience.import_subscribers(engine, settings, "", confirmed=True)


def test_csv_import_confirmed_then_export_round_trips(engine, settings) -> None:
    text = (
        "\ufeffemail,topics,name\nb@example.org,transformers;optimization,Bea\n\nA@example.org,,\n"
    )
    report = audience.import_subscribers(engine, settings, text, confirmed=True)
    assert report == audience.ImportReport(imported=2, confirmations_sent=0)
    out = io.StringIO()
    with Session(engine) as session:
        assert csv_io.write_export(session, out) == 2
        vouched = session.exec(select(ConsentRecord).where(ConsentRecord.action == "vouched"))
        assert len(vouched.all()) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["email"], r["topics"], r["name"], r["status"]) for r in rows] == [
        ("a@example.org", "", "", "active"),
        ("b@example.org", "optimization;transformers", "Bea", "active"),
    ]
    # The export is itself importable (extra columns are the export's own).
    again = audience.import_subscribers(engine, settings, out.getvalue(), confirmed=True)
    assert again.imported == 2


def test_csv_import_unconfirmed_sends_one_confirmation_each(engine, settings) -> None:
    text = "email,topics\nc@example.org,optimization\nd@example.org,\n"
    report = audience.import_subscribers(engine, settings, text, confirmed=False)
    assert report.confirmations_sent == 2
    files = sorted(Path(settings.outbox_dir).glob("*.eml"))
    assert len(files) == 2
    bodies = [f.read_text() for f in files]
    assert any("To: c@example.org" in b for b in bodies)
    assert all("/confirm/" in b for b in bodies)


def _cli(settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_VAR_DIR": str(settings.var_dir),
        "NEWSLETTER_SECRET_KEY": settings.secret_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "subscribers", *args],
        env=env,
        cwd=settings.var_dir.parent,
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_cli_add_list_export_remove(settings, engine, tmp_path: Path) -> None:
    added = _cli(settings, "add", "Eve@Example.org", "--topics", "optimization,transformers")
    assert added.returncode == 0, added.stderr
    assert "confirmation email sent" in added.stdout
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 1
    vouched = _cli(settings, "add", "frank@example.org", "--confirmed")
    assert vouched.returncode == 0 and "active" in vouched.stdout
    bad = _cli(settings, "add", "a@b.com\r\nBcc: x@example.org")
    assert bad.returncode == 1 and "line breaks" in bad.stderr and "Traceback" not in bad.stderr
    unknown = _cli(settings, "add", "g@example.org", "--topics", "nope")
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr
    listed = _cli(settings, "list")
    assert "eve@example.org" in listed.stdout and "pending" in listed.stdout
    out = tmp_path / "all.csv"
    assert _cli(settings, "export", str(out)).returncode == 0
    assert "frank@example.org,,,active" in out.read_text()
    person = _cli(settings, "export", "--email", "eve@example.org")
    assert json.loads(person.stdout)["topics"] == ["optimization", "transformers"]
    assert _cli(settings, "remove", "eve@example.org").returncode == 0
    gone = _cli(settings, "remove", "eve@example.org")
    assert gone.returncode == 1 and "no subscriber" in gone.stderr
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("email,topics\nh@example.org,zzz\n")
    failed = _cli(settings, "import", str(bad_csv))
    assert failed.returncode == 1 and "row 2, column 'topics'" in failed.stderr
    with Session(engine) as session:
        emails = sorted(s.email for s in session.exec(select(Subscriber)).all())
    assert emails == ["frank@example.org"]


def test_prepared_hmac_matches_the_standard_library() -> None:
    """The signer's HMAC from prepared pads is RFC 2104 HMAC: same bytes as `hmac.digest`,
    for the derived 20-byte key and for keys longer than a block (hashed first)."""
    import hashlib
    import hmac

    from subscribers.tokens import _hmac_pads, token_signer

    signer = token_signer("s" * 40, "unsubscribe")
    for value in (b"", b"x", b"WyJhYmMiLDNd.aFJ2gA", bytes(range(256)) * 3):
        assert signer._mac(value) == hmac.digest(signer._key, value, "sha1")
    for key in (b"k", b"k" * 64, b"k" * 65, bytes(range(200))):
        inner, outer = _hmac_pads(key, hashlib.sha1)
        inner.update(b"message")
        outer.update(inner.digest())
        assert outer.digest() == hmac.digest(key, b"message", "sha1")
        inner, outer = _hmac_pads(key, "sha256")
        inner.update(b"message")
        outer.update(inner.digest())
        assert outer.digest() == hmac.digest(key, b"message", "sha256")
