"""DNS checks of the sending domain: SPF (and whether it passes for the configured backend),
DMARC and its policy, DKIM selectors, MX, and the base URL's name.

`checkdmarc` parses SPF and DMARC; `dnspython` does the rest. Everything goes through one
resolver, pointed at `NEWSLETTER_DNS_SERVER` when set (tests use a local server).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

from newsletter.doctor.checks import Check, fail, ok, warn
from newsletter.doctor.configuration import from_domain, is_local_domain
from newsletter.settings import Settings

DNS_TIMEOUT = 5.0
SENDGRID_SPF = "sendgrid.net"


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    if not settings.dns_server:
        resolver = dns.resolver.Resolver()
    else:
        host, _, port = settings.dns_server.rpartition(":")
        if not host or ":" in host:  # no port, or a bare IPv6 address
            host, port = settings.dns_server, ""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port or 53)
    resolver.lifetime = DNS_TIMEOUT
    return resolver


def _lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str] | None:
    """Records as text; [] when the name has none of that type, None when it does not exist."""
    try:
        answer = resolver.resolve(name, rdtype)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    if rdtype == "TXT":
        return [b"".join(r.strings).decode(errors="replace") for r in answer]  # type: ignore[attr-defined]
    return [r.to_text() for r in answer]


def _spf_networks(
    parsed: dict[str, Any], resolver: dns.resolver.Resolver, domain: str
) -> list[Any]:
    """Every network an SPF record (with its includes) lets send, for the relay's address."""
    nets: list[Any] = []
    for mech in parsed.get("mechanisms", []):
        if mech.get("action") != "pass":
            continue
        kind, value = mech.get("mechanism"), mech.get("value") or domain
        if kind in ("ip4", "ip6"):
            nets.append(ipaddress.ip_network(value, strict=False))
        elif kind == "include" and isinstance(mech.get("parsed"), dict):
            nets += _spf_networks(mech["parsed"], resolver, value)
        elif kind == "a":
            for rdtype in ("A", "AAAA"):
                nets += [ipaddress.ip_network(a) for a in _lookup(resolver, value, rdtype) or []]
        elif kind == "mx":
            for mx in _lookup(resolver, value, "MX") or []:
                host = mx.split()[-1]
                for rdtype in ("A", "AAAA"):
                    nets += [ipaddress.ip_network(a) for a in _lookup(resolver, host, rdtype) or []]
    return nets


def _includes(parsed: dict[str, Any]) -> list[str]:
    found = []
    for mech in parsed.get("mechanisms", []):
        if mech.get("mechanism") == "include":
            found.append(str(mech.get("value", "")).lower())
            if isinstance(mech.get("parsed"), dict):
                found += _includes(mech["parsed"])
    return found


_LOCAL_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]


def _is_local(address: Any) -> bool:
    """Loopback, link-local or a private network: not the address receivers see."""
    return (
        address.is_loopback
        or address.is_link_local
        or any(address in n for n in _LOCAL_NETWORKS if n.version == address.version)
    )


def _relay_addresses(settings: Settings, resolver: dns.resolver.Resolver) -> list[Any]:
    host = urlsplit(settings.smtp_url).hostname or "localhost"
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if host == "localhost":
        return [ipaddress.ip_address("127.0.0.1")]
    return [
        ipaddress.ip_address(a)
        for rdtype in ("A", "AAAA")
        for a in _lookup(resolver, host, rdtype) or []
    ]


def check_spf(settings: Settings, resolver: dns.resolver.Resolver) -> Check:
    # checkdmarc costs about 0.5 s to import: loaded here, only to keep the pre-flight checks
    # of `issue send` fast, which need none of it.
    from checkdmarc.spf import check_spf as parse_spf
    from checkdmarc.utils import get_base_domain

    name = "SPF"
    domain = from_domain(settings)
    # SPF is checked on the envelope sender: the bounce address's domain when VERP is used.
    envelope = domain
    if settings.mail_backend == "smtp" and settings.bounce_address:
        envelope = settings.bounce_address.rpartition("@")[2].lower()
    result = parse_spf(envelope, resolver=resolver, timeout=DNS_TIMEOUT, retries=0)
    record = result.get("record")
    if not result.get("valid"):
        error = result.get("error") or "no SPF record"
        return fail(
            name,
            f"{envelope}: {error}",
            f'publish one TXT record at {envelope} such as "v=spf1 include:<your provider> -all"',
        )
    parsed = result.get("parsed") or {}
    if parsed.get("all") == "pass":
        return fail(
            name,
            f"{envelope}: {record} lets anyone send (+all)",
            "end the record with -all or ~all",
        )
    if envelope != domain and get_base_domain(envelope) != get_base_domain(domain):
        return warn(
            name,
            f"the envelope domain {envelope} does not align with the From domain {domain}",
            "put NEWSLETTER_BOUNCE_ADDRESS at the From domain or a subdomain of it",
        )
    if settings.mail_backend == "sendgrid":
        if any(i == SENDGRID_SPF or i.endswith("." + SENDGRID_SPF) for i in _includes(parsed)):
            return ok(name, f"{envelope}: {record} (authorises SendGrid)")
        return warn(
            name,
            f"{envelope}: {record} does not authorise SendGrid, so SPF aligns only through "
            "SendGrid's domain authentication (its em… return-path CNAME)",
            "set up SendGrid domain authentication, or add include:sendgrid.net",
        )
    if settings.mail_backend == "smtp":
        relays = _relay_addresses(settings, resolver)
        if not relays:
            return warn(
                name,
                f"{envelope}: {record}; the SMTP relay's name does not resolve",
                "check NEWSLETTER_SMTP_URL",
            )
        public = [a for a in relays if not _is_local(a)]
        if not public:
            return warn(
                name,
                f"{envelope}: {record}; the relay {relays[0]} is local, so which public address "
                "sends cannot be told from here",
                "make sure the record lists the public address of the relay's outbound server",
            )
        nets = _spf_networks(parsed, resolver, envelope)
        missing = [
            str(a) for a in public if not any(a in n for n in nets if n.version == a.version)
        ]
        if missing:
            return fail(
                name,
                f"{envelope}: {record} does not authorise the SMTP relay at {', '.join(missing)}",
                f"add ip{public[0].version}:{missing[0]} (or an include of the relay's provider)",
            )
        return ok(name, f"{envelope}: {record} (authorises the relay {public[0]})")
    return ok(name, f"{envelope}: {record}")


def check_dmarc(settings: Settings, resolver: dns.resolver.Resolver) -> Check:
    from checkdmarc.dmarc import check_dmarc as parse_dmarc  # see check_spf

    name = "DMARC"
    domain = from_domain(settings)
    result = parse_dmarc(domain, resolver=resolver, timeout=DNS_TIMEOUT, retries=0)
    if not result.get("valid"):
        return fail(
            name,
            f"{domain}: {result.get('error') or 'no DMARC record'} (Gmail and Yahoo require one)",
            f'publish TXT at _dmarc.{domain}: "v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}"',
        )
    tags = result.get("tags") or {}
    policy = str(tags.get("p", {}).get("value", "none"))
    where = result.get("location") or domain
    if policy == "none":
        return warn(
            name,
            f"{where}: p=none only monitors; spoofed mail in your name is still delivered",
            "once the aggregate reports show your mail passing, move to p=quarantine",
        )
    return ok(name, f"{where}: p={policy}")


def check_dkim(settings: Settings, resolver: dns.resolver.Resolver) -> list[Check]:
    domain = from_domain(settings)
    selectors = settings.dkim_selector_list
    if not selectors:
        hint = "s1,s2 for SendGrid" if settings.mail_backend == "sendgrid" else "your signer's"
        return [
            warn(
                "DKIM",
                "no selectors to check (Gmail and Yahoo require DKIM signing at the From domain)",
                f"set NEWSLETTER_DKIM_SELECTORS to the selectors you sign with ({hint})",
            )
        ]
    checks = []
    for selector in selectors:
        name = f"DKIM {selector}"
        where = f"{selector}._domainkey.{domain}"
        records = [r for r in _lookup(resolver, where, "TXT") or [] if "p=" in r]
        key = next(
            (
                part.split("=", 1)[1].strip()
                for r in records
                for part in r.split(";")
                if part.strip().startswith("p=")
            ),
            None,
        )
        if key is None:
            checks.append(
                fail(
                    name,
                    f"no DKIM key at {where}",
                    f"publish the public key your signer gives for selector {selector}",
                )
            )
        elif not key:
            checks.append(
                fail(name, f"the key at {where} is revoked (empty p=)", "publish the current key")
            )
        else:
            checks.append(ok(name, f"key published at {where}"))
    return checks


def check_mx(settings: Settings, resolver: dns.resolver.Resolver) -> Check:
    name = "MX"
    domain = from_domain(settings)
    records = _lookup(resolver, domain, "MX")
    if records is None:
        return fail(name, f"{domain} does not exist in DNS", "send From a domain you own")
    if not records:
        return warn(
            name,
            f"{domain} has no MX record: replies and some receivers' sender checks fail",
            f"publish an MX record for {domain}",
        )
    return ok(name, ", ".join(sorted(r.split()[-1].rstrip(".") for r in records)))


def check_base_url_name(settings: Settings, resolver: dns.resolver.Resolver) -> Check:
    name = "base URL name"
    host = urlsplit(settings.base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return ok(name, f"{host} is an address")
    except ValueError:
        pass
    found = (_lookup(resolver, host, "A") or []) + (_lookup(resolver, host, "AAAA") or [])
    if not found:
        return fail(
            name,
            f"{host} does not resolve: every link in the email would be dead",
            f"publish an A or AAAA record for {host}",
        )
    return ok(name, f"{host} -> {', '.join(found)}")


def _short(exc: Exception) -> str:
    """dnspython repeats itself per server and attempt: the first sentence says it."""
    return str(exc).split(":", 1)[0].strip() or type(exc).__name__


def domain_checks(settings: Settings) -> list[Check]:
    domain = from_domain(settings)
    if is_local_domain(domain):
        return [
            fail(
                "sending domain",
                f"{domain or '(none)'} is not a public domain: SPF, DKIM, DMARC cannot be checked",
                "set NEWSLETTER_FROM to an address at your sending domain",
            )
        ]
    resolver = make_resolver(settings)
    try:  # one probe, so an unreachable resolver is one line, not a timeout per check
        _lookup(resolver, domain, "TXT")
    except dns.exception.DNSException as exc:
        where = settings.dns_server or "the system resolver"
        return [
            fail(
                "DNS",
                f"{where} did not answer for {domain}: {_short(exc)}",
                "check NEWSLETTER_DNS_SERVER or the network, then run doctor again",
            )
        ]
    checks = []
    for check in (check_spf, check_dmarc, check_dkim, check_mx):
        try:
            got = check(settings, resolver)
        except dns.exception.DNSException as exc:
            got = fail(
                check.__name__.removeprefix("check_").upper(),
                f"DNS lookup failed: {_short(exc)}",
                "check NEWSLETTER_DNS_SERVER or the network",
            )
        checks += got if isinstance(got, list) else [got]
    if not settings.base_url_is_loopback:
        try:
            checks.append(check_base_url_name(settings, resolver))
        except dns.exception.DNSException as exc:
            checks.append(
                fail("base URL name", f"DNS lookup failed: {_short(exc)}", "check the network")
            )
    return checks


def send_checks(settings: Settings) -> list[Check]:
    """What a send checks of the domain: SPF authorising the backend, a DMARC record, the
    From domain existing. A fail is definite (the records say so); a DNS server that does
    not answer is a warning, since it says nothing about the records."""
    domain = from_domain(settings)
    resolver = make_resolver(settings)
    where = settings.dns_server or "the system resolver"
    try:
        _lookup(resolver, domain, "TXT")
    except dns.exception.DNSException as exc:
        return [
            warn(
                "DNS",
                f"{where} did not answer for {domain} ({_short(exc)}): SPF, DMARC and the "
                "From domain were not checked",
                "run `newsletter doctor` once DNS answers",
            )
        ]
    checks = []
    for check in (check_spf, check_dmarc, check_mx):
        name = check.__name__.removeprefix("check_").upper()
        try:
            checks.append(check(settings, resolver))
        except dns.exception.DNSException as exc:
            checks.append(
                warn(name, f"not checked: DNS lookup failed ({_short(exc)})", "run doctor later")
            )
    return checks
