"""The domain pre-flight of a send (inbox review P2): `issue send` and the monthly job ask a
real DNS server (dnslib on 127.0.0.1) for SPF, DMARC and the From domain, over SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.doctor.checks import Level
from newsletter.doctor.preflight import domain_preflight
from newsletter.models import AuditEntry, JobRun
from newsletter.testing.dns_server import DnsServer
from newsletter.testing.postgres import free_port
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers
from newsletter.testing.smtp_sink import SmtpSink

ZONE = """
; SPF lets the relay (127.0.0.1) send, but no DMARC record is published
nodmarc.example.org. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
nodmarc.example.org. 300 IN MX 10 mx.nodmarc.example.org.
; everything a send needs
ready.example.org. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
ready.example.org. 300 IN MX 10 mx.ready.example.org.
_dmarc.ready.example.org. 300 IN TXT "v=DMARC1; p=quarantine"
"""
EDITOR = "editor@ready.example.org"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def smtp_env(settings, monkeypatch, sink: SmtpSink, session: Session):
    """`issue send` over SMTP to two subscribers, From a domain of the DNS zone."""
    seed_issue(session, "2026-04", issue_topics(session))
    seed_subscribers(session, 2, [()])
    session.commit()

    def configure(domain: str, dns_server: str) -> None:
        for name, value in {
            "NEWSLETTER_MAIL_BACKEND": "smtp",
            "NEWSLETTER_SMTP_URL": sink.url,
            "NEWSLETTER_FROM": f"ML Foundations <news@{domain}>",
            "NEWSLETTER_DNS_SERVER": dns_server,
            "NEWSLETTER_EDITORS": EDITOR,
            "NEWSLETTER_POSTAL_ADDRESS": settings.postal_address,
            "NEWSLETTER_SECRET_KEY": settings.secret_key,
        }.items():
            monkeypatch.setenv(name, value)

    return configure


def _issue_mail(sink: SmtpSink) -> list[str]:
    return [r for m in sink.messages for r in m.rcpt_tos if r != EDITOR]


def test_a_domain_without_dmarc_refuses_the_send_names_the_fix_and_mails_the_editors(
    cli, dns: DnsServer, sink: SmtpSink, smtp_env, session: Session
) -> None:
    smtp_env("nodmarc.example.org", dns.address)
    refused = cli("issue", "send", "2026-04", "--yes")
    assert refused.exit_code == 1, refused.output
    output = " ".join(refused.output.split())
    assert "DMARC" in output and "_dmarc.nodmarc.example.org" in output  # the fix
    assert "Not sending 2026-04" in output
    assert _issue_mail(sink) == []  # nobody was mailed the issue …
    (alert,) = [m for m in sink.messages if m.rcpt_tos == (EDITOR,)]  # … the editor was told
    assert b"not sent" in alert.data and b"DMARC" in alert.data

    forced = cli("issue", "send", "2026-04", "--force", "--yes")
    assert forced.exit_code == 0, forced.output
    assert sorted(_issue_mail(sink)) == ["reader000000@example.org", "reader000001@example.org"]
    (entry,) = session.execute(
        select(AuditEntry).where(AuditEntry.action == "issue.send_forced")
    ).scalars()
    assert entry.target == "2026-04" and "DMARC" in entry.detail


def test_a_dns_server_that_does_not_answer_warns_and_sends(cli, sink: SmtpSink, smtp_env) -> None:
    smtp_env("ready.example.org", f"127.0.0.1:{free_port()}")
    sent = cli("issue", "send", "2026-04", "--yes")
    assert sent.exit_code == 0, sent.output
    output = " ".join(sent.output.split())
    assert "warning" in output and "did not answer" in output and "not checked" in output
    assert len(_issue_mail(sink)) == 2


def test_a_ready_domain_sends_and_the_answer_is_cached_for_a_day(
    settings, cli, sink: SmtpSink, smtp_env
) -> None:
    with DnsServer(ZONE) as own:
        smtp_env("ready.example.org", own.address)
        sent = cli("issue", "send", "2026-04", "--yes")
        assert sent.exit_code == 0, sent.output
        # Only the local relay's SPF warning (the sink is on 127.0.0.1): nothing refused.
        assert "error" not in sent.output and "relay 127.0.0.1 is local" in sent.output
        ready = settings.model_copy(
            update={
                "mail_backend": "smtp",
                "smtp_url": sink.url,
                "from_": "ML Foundations <news@ready.example.org>",
                "dns_server": own.address,
            }
        )
        first = domain_preflight(ready)
    assert first.cached and not first.failures  # written by the send above
    # The DNS server is gone: within the day the cached answer stands …
    assert domain_preflight(ready).checks == first.checks
    # … after a day it asks again, and an unanswered question is a warning, not cached.
    later = domain_preflight(ready, now=datetime.now(UTC) + timedelta(hours=25))
    assert [(c.name, c.level) for c in later.checks] == [("DNS", Level.WARN)]
    assert not later.cached
    # A changed setting is not served from the cache either.
    other = ready.model_copy(update={"from_": "ML Foundations <news@nodmarc.example.org>"})
    assert not domain_preflight(other).cached


def test_outbox_and_local_domains_ask_no_dns(settings) -> None:
    assert domain_preflight(settings).checks == []  # outbox backend
    local = settings.model_copy(update={"mail_backend": "smtp"})  # From @localhost
    assert domain_preflight(local).checks == []


SAMPLE = Path(__file__).resolve().parent.parent / "newsletter" / "data" / "sample_papers.yaml"


def test_the_monthly_job_does_not_send_from_a_domain_without_dmarc(
    engine, settings, dns: DnsServer, sink: SmtpSink
) -> None:
    from newsletter.monthly import run_monthly_job
    from newsletter.papers.store import import_paths

    assert all(r.ok for r in import_paths(engine, [SAMPLE]))
    with Session(engine) as session:
        seed_subscribers(session, 2, [()])
        session.commit()
    broken = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_url": sink.url,
            "from_": "ML Foundations <news@nodmarc.example.org>",
            "dns_server": dns.address,
            "editors": EDITOR,
        }
    )
    outcome = run_monthly_job(engine, broken, month="2026-04", deliver_here=True)
    assert outcome.outcome == "preflight-failed", outcome
    assert "DMARC" in outcome.message and "newsletter issue send 2026-04" in outcome.message
    assert _issue_mail(sink) == []
    assert [m.rcpt_tos for m in sink.messages] == [(EDITOR,)]
    with Session(engine) as session:
        (run,) = session.execute(select(JobRun).where(JobRun.outcome == "preflight-failed")).all()


def test_a_scheduled_send_from_a_domain_without_dmarc_does_not_go(
    engine, settings, session: Session, dns: DnsServer, sink: SmtpSink
) -> None:
    from newsletter.release import send_due_issues

    issue = seed_issue(session, "2026-04", issue_topics(session))
    issue.scheduled_for = datetime.now(UTC) - timedelta(minutes=1)
    seed_subscribers(session, 2, [()])
    session.commit()
    broken = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_url": sink.url,
            "from_": "ML Foundations <news@nodmarc.example.org>",
            "dns_server": dns.address,
            "editors": EDITOR,
        }
    )
    assert send_due_issues(engine, broken, deliver_here=True) == ["2026-04: preflight-failed"]
    assert _issue_mail(sink) == [] and [m.rcpt_tos for m in sink.messages] == [(EDITOR,)]
    assert b"schedule cleared" in sink.messages[0].data
    (run,) = session.execute(select(JobRun).where(JobRun.outcome == "preflight-failed")).scalars()
    assert "DMARC" in run.message and "newsletter issue send 2026-04" in run.message
    session.commit()
    assert send_due_issues(engine, broken, deliver_here=True) == []  # the schedule was taken
