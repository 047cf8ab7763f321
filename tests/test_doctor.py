"""`newsletter doctor` against a local DNS server (dnslib) and the fake SendGrid API, and the
pre-flight `issue send` runs. Nothing here asks the real DNS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.doctor import Check, Level, fast_checks, run_doctor
from newsletter.doctor.configuration import read_list_unsubscribe
from newsletter.doctor.domain import domain_checks
from newsletter.settings import Settings, load_settings
from newsletter.testing.dns_server import DnsServer
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.smtp_sink import SmtpSink

KEY = "SG.doctor-test-key"
SECRET = "k3Q9vVw2-Xr8LmT1pZs4Yh6Nd0Jc7GbFa5Ue"
DKIM = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu3hzW1PfN6N1kXQ"
ZONE = f"""
; a domain ready to send through SendGrid or through the relay at 198.51.100.25
news.example.org. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 include:sendgrid.net -all"
news.example.org. 300 IN MX 10 mx.news.example.org.
news.example.org. 300 IN A 203.0.113.10
_dmarc.news.example.org. 300 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@news.example.org"
s1._domainkey.news.example.org. 300 IN TXT "{DKIM}"
mx.news.example.org. 300 IN A 203.0.113.11
smtp.example.net. 300 IN A 198.51.100.25
other-relay.example.net. 300 IN A 192.0.2.99
sendgrid.net. 300 IN TXT "v=spf1 ip4:167.89.0.0/17 ip4:149.72.0.0/16 ~all"
; no SPF record
nospf.example.org. 300 IN MX 10 mx.news.example.org.
_dmarc.nospf.example.org. 300 IN TXT "v=DMARC1; p=reject"
s1._domainkey.nospf.example.org. 300 IN TXT "{DKIM}"
; DMARC that only monitors
pnone.example.org. 300 IN TXT "v=spf1 include:sendgrid.net -all"
pnone.example.org. 300 IN MX 10 mx.news.example.org.
_dmarc.pnone.example.org. 300 IN TXT "v=DMARC1; p=none"
s1._domainkey.pnone.example.org. 300 IN TXT "{DKIM}"
; the DKIM selector is not published
nodkim.example.org. 300 IN TXT "v=spf1 include:sendgrid.net -all"
nodkim.example.org. 300 IN MX 10 mx.news.example.org.
_dmarc.nodkim.example.org. 300 IN TXT "v=DMARC1; p=quarantine"
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[FakeSendgrid]:
    with FakeSendgrid(KEY) as fake:
        yield fake


def ready(tmp_path: Path, dns: DnsServer, sendgrid: FakeSendgrid, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "base_url": "https://news.example.org",
        "secret_key": SECRET,
        "from_": "ML Foundations <newsletter@news.example.org>",
        "postal_address": "ML Foundations, 1 Example Street, 10115 Berlin",
        "mail_backend": "sendgrid",
        "sendgrid_api_key": KEY,
        "sendgrid_host": sendgrid.url,
        "dns_server": dns.address,
        "dkim_selectors": "s1",
        "_env_file": None,
    }
    values.update(overrides)
    return load_settings(**values)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_ready_domain_passes_every_check(tmp_path, dns, sendgrid) -> None:
    checks = run_doctor(ready(tmp_path, dns, sendgrid))
    levels = {c.name: c.level for c in checks}
    assert levels == {
        "From address": Level.OK,
        "base URL": Level.OK,
        "postal address": Level.OK,
        "secret key": Level.OK,
        "List-Unsubscribe": Level.OK,  # raw on the wire since issue 11's WirePolicy
        "SPF": Level.OK,
        "DMARC": Level.OK,
        "DKIM s1": Level.OK,
        "MX": Level.OK,
        "base URL name": Level.OK,
        "SendGrid API key": Level.OK,
    }
    assert "authorises SendGrid" in by_name(checks)["SPF"].message
    assert "p=quarantine" in by_name(checks)["DMARC"].message


def test_missing_spf_fails_with_the_record_to_publish(tmp_path, dns, sendgrid) -> None:
    spf = by_name(domain_checks(ready(tmp_path, dns, sendgrid, from_="n@nospf.example.org")))
    assert spf["SPF"].level == Level.FAIL
    assert "nospf.example.org" in spf["SPF"].message and "v=spf1" in spf["SPF"].fix
    assert spf["DMARC"].level == Level.OK and "p=reject" in spf["DMARC"].message


def test_dmarc_p_none_warns_and_says_what_to_move_to(tmp_path, dns, sendgrid) -> None:
    checks = by_name(domain_checks(ready(tmp_path, dns, sendgrid, from_="n@pnone.example.org")))
    assert checks["DMARC"].level == Level.WARN
    assert "p=none" in checks["DMARC"].message and "p=quarantine" in checks["DMARC"].fix
    assert checks["SPF"].level == Level.OK


def test_missing_dkim_selector_fails_and_names_the_record(tmp_path, dns, sendgrid) -> None:
    settings = ready(tmp_path, dns, sendgrid, from_="n@nodkim.example.org", dkim_selectors="s1,s2")
    checks = by_name(domain_checks(settings))
    assert checks["DKIM s1"].level == Level.FAIL and checks["DKIM s2"].level == Level.FAIL
    assert "s1._domainkey.nodkim.example.org" in checks["DKIM s1"].message
    unset = by_name(domain_checks(ready(tmp_path, dns, sendgrid, dkim_selectors="")))
    assert unset["DKIM"].level == Level.WARN and "NEWSLETTER_DKIM_SELECTORS" in unset["DKIM"].fix


def test_spf_is_checked_for_the_smtp_relay_and_the_envelope_domain(tmp_path, dns, sendgrid) -> None:
    def spf(**overrides: object) -> Check:
        settings = ready(tmp_path, dns, sendgrid, mail_backend="smtp", **overrides)
        return by_name(domain_checks(settings))["SPF"]

    assert spf(smtp_url="smtp://smtp.example.net:587").level == Level.OK
    refused = spf(smtp_url="smtp://other-relay.example.net:587")
    assert refused.level == Level.FAIL and "192.0.2.99" in refused.message
    assert "ip4:192.0.2.99" in refused.fix
    assert spf(smtp_url="smtp://127.0.0.1:25").level == Level.WARN  # cannot tell from here
    # VERP: SPF is evaluated on the bounce address's domain, which must align with From.
    elsewhere = spf(smtp_url="smtp://smtp.example.net", bounce_address="b@nospf.example.org")
    assert elsewhere.level == Level.FAIL and "nospf.example.org" in elsewhere.message


def test_sendgrid_key_is_checked_against_the_configured_host(tmp_path, dns, sendgrid) -> None:
    def key_check(settings: Settings) -> Check:
        return next(c for c in run_doctor(settings) if c.name == "SendGrid API key")

    bad = key_check(ready(tmp_path, dns, sendgrid, sendgrid_api_key="SG.revoked"))
    assert bad.level == Level.FAIL and "401" in bad.message and "SENDGRID_API_KEY" in bad.fix
    with FakeSendgrid(KEY, scopes=("user.profile.read",)) as read_only:
        limited = key_check(ready(tmp_path, dns, sendgrid, sendgrid_host=read_only.url))
    assert limited.level == Level.FAIL and "mail.send" in limited.message


def test_smtp_relay_answers_and_bounces_are_not_read(tmp_path, dns, sendgrid) -> None:
    with SmtpSink() as sink:
        settings = ready(tmp_path, dns, sendgrid, mail_backend="smtp", smtp_url=sink.url)
        relay = by_name(run_doctor(settings))["SMTP relay"]
    assert relay.level == Level.WARN and "NEWSLETTER_BOUNCE_ADDRESS" in relay.fix


def test_configuration_checks(tmp_path, dns, sendgrid) -> None:
    # A public base URL refuses keys under 32 characters at start; doctor also fails long
    # keys of few distinct characters.
    weak = by_name(fast_checks(ready(tmp_path, dns, sendgrid, secret_key="changeme" * 5)))
    assert weak["secret key"].level == Level.FAIL
    plain = by_name(fast_checks(ready(tmp_path, dns, sendgrid, base_url="http://news.example.org")))
    assert (
        plain["base URL"].level == Level.FAIL
        and "https://news.example.org" in plain["base URL"].fix
    )
    no_address = by_name(fast_checks(ready(tmp_path, dns, sendgrid, postal_address="")))
    assert no_address["postal address"].level == Level.FAIL
    local = run_doctor(ready(tmp_path, dns, sendgrid, from_="n@localhost"))
    assert by_name(local)["sending domain"].level == Level.FAIL


def test_list_unsubscribe_is_read_back_from_the_bytes(tmp_path, dns, sendgrid) -> None:
    check = by_name(fast_checks(ready(tmp_path, dns, sendgrid)))["List-Unsubscribe"]
    # A real message for a real token, serialised as the SMTP transport does. Until the
    # transports write long structured headers raw, this reports the RFC 2047 encoding.
    if check.level == Level.OK:
        assert check.message.startswith("<https://news.example.org/unsubscribe/")
    else:
        assert check.level == Level.FAIL and "not a raw <https://news.example.org" in check.message
    token = "WzEsMV0.aGVsbG8td29ybGQtdG9rZW4tdGhhdC1pcy1sb25n.c2lnbmF0dXJl"
    url = f"https://news.example.org/unsubscribe/{token}"
    post = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"

    def judge(header: bytes, extra: bytes = post) -> Check:
        return read_list_unsubscribe(
            b"From: n@news.example.org\r\n" + header + extra + b"\r\nbody",
            "https://news.example.org",
        )

    assert judge(f"List-Unsubscribe: <{url}>\r\n".encode()).level == Level.OK
    mailto = "<mailto:bounces+u.LoURet_ZEUrYpPj5.1.kv4iz46gbaqwm2mz@news.example.org>"
    both = judge(f"List-Unsubscribe: <{url}>,\r\n {mailto}\r\n".encode())
    assert both.level == Level.OK and "mailto" in both.message
    broken = judge(f"List-Unsubscribe: <{url}>,\r\n <mailto:a b@x.org>\r\n".encode())
    assert broken.level == Level.FAIL
    encoded = b"List-Unsubscribe: =?utf-8?q?=3Chttps=3A//news=2Eexample=2Eorg/unsub?=\r\n"
    assert judge(encoded).level == Level.FAIL
    assert judge(f"List-Unsubscribe: <{url}>\r\n".encode(), extra=b"").level == Level.FAIL
    assert judge(b"").level == Level.FAIL
    insecure = read_list_unsubscribe(
        f"List-Unsubscribe: <http://news.example.org/unsubscribe/{token}>\r\n".encode() + post,
        "http://news.example.org",
    )
    assert insecure.level == Level.WARN


def test_doctor_command_prints_one_line_per_check_and_exits_1_on_a_fail(
    tmp_path, dns, sendgrid, monkeypatch
) -> None:
    from newsletter.cli import app
    from newsletter.settings import get_settings

    env = {
        "NEWSLETTER_VAR_DIR": str(tmp_path / "var"),
        "NEWSLETTER_BASE_URL": "https://news.example.org",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_FROM": "ML Foundations <newsletter@nospf.example.org>",
        "NEWSLETTER_POSTAL_ADDRESS": "1 Example Street, Berlin",
        "NEWSLETTER_MAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": KEY,
        "NEWSLETTER_SENDGRID_HOST": sendgrid.url,
        "NEWSLETTER_DNS_SERVER": dns.address,
        "NEWSLETTER_DKIM_SELECTORS": "s1",
        "COLUMNS": "250",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["doctor"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("fail  SPF: nospf.example.org") for line in lines)
    assert any(line.startswith("ok    DMARC:") for line in lines)
    assert any(line.startswith("ok    SendGrid API key:") for line in lines)
    assert all(line.split()[0] in {"ok", "warn", "fail"} for line in lines)


def test_issue_send_refuses_on_a_failed_preflight_unless_forced(
    settings, session, cli, monkeypatch
) -> None:
    from sqlalchemy import select

    from newsletter.models import Delivery
    from newsletter.testing.sample_send import seed_issue, seed_subscribers

    seed_issue(session, "2026-04")
    seed_subscribers(session, 2, [()])
    session.commit()
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", settings.postal_address)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "changeme")
    refused = cli("issue", "send", "2026-04", "--yes")
    assert refused.exit_code == 1
    assert "secret key" in refused.output and "--force" in refused.output
    assert session.execute(select(Delivery)).first() is None  # nothing planned, nothing sent
    session.rollback()
    forced = cli("issue", "send", "2026-04", "--force", "--yes")
    assert forced.exit_code == 0, forced.output
    assert len(list((settings.var_dir / "outbox").glob("delivery-*.eml"))) == 2


def test_an_unanswering_dns_server_is_one_fail_line(tmp_path, sendgrid, monkeypatch) -> None:
    from newsletter.doctor import domain
    from newsletter.testing.postgres import free_port

    monkeypatch.setattr(domain, "DNS_TIMEOUT", 0.5)  # nothing listens: do not wait 5 s
    settings = load_settings(
        var_dir=tmp_path,
        from_="n@news.example.org",
        dns_server=f"127.0.0.1:{free_port()}",
        _env_file=None,
    )
    (check,) = domain_checks(settings)
    assert check.name == "DNS" and check.level == Level.FAIL
    assert "NEWSLETTER_DNS_SERVER" in check.fix and "did not answer" in check.message
