"""An authoritative DNS server on 127.0.0.1 (dnslib) answering from zone text, for tests of
`newsletter doctor` that must never ask the real DNS.

    with DnsServer(\"\"\"news.example.org. 300 IN TXT "v=spf1 -all"\"\"\") as dns:
        settings = load_settings(dns_server=dns.address, ...)

A name with records of other types answers NOERROR with no answer (as real servers do);
an unknown name answers NXDOMAIN. UDP and TCP, since long TXT answers fall back to TCP.
"""

from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from newsletter.testing.postgres import free_port


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: str) -> None:
        self.records = [(rr.rname, QTYPE[rr.rtype], rr) for rr in RR.fromZone(zone)]

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname, qtype = request.q.qname, QTYPE[request.q.qtype]
        known = False
        for name, rtype, rr in self.records:
            if name != qname:
                continue
            known = True
            if qtype in (rtype, "ANY") or rtype == "CNAME":
                reply.add_answer(rr)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Quiet(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class DnsServer:
    def __init__(self, zone: str) -> None:
        self.port = free_port()
        resolver = _ZoneResolver(zone)
        self._servers = [
            DNSServer(resolver, address="127.0.0.1", port=self.port, tcp=tcp, logger=_Quiet())
            for tcp in (False, True)
        ]

    @property
    def address(self) -> str:
        """The value for NEWSLETTER_DNS_SERVER."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
