"""Reading a bounce mailbox after a large send: 1,000 messages in a throwaway Dovecot
(900 hard DSNs, 50 soft, 50 auto-replies), each to the signed VERP address of one of 1,000
sent deliveries on SQLite.

Side by side: parsing alone (flufl.bounce + the DSN fields), reading the mailbox over IMAP
alone, and `bounces fetch` end to end (read, prove the delivery, record each bounce,
suppress, delete).

    .venv/bin/python benchmarks/bounces.py [--messages 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from imap_tools import MailBoxUnencrypted
from sqlmodel import Session

from newsletter.bootstrap import init_database
from newsletter.bounces.dsn import read_message
from newsletter.bounces.mailbox import fetch_bounces
from newsletter.db import make_engine
from newsletter.models import Delivery
from newsletter.settings import load_settings
from newsletter.testing.dovecot import PASSWORD, USER, start_dovecot
from newsletter.testing.sample_send import seed_issue, seed_subscribers
from newsletter.verp import verp_address
from subscribers.models import utcnow

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"
BOUNCES = "bounces@news.example.org"
SECRET = "benchmark-secret-key-not-for-production"


def message(kind: str, rcpt: str, n: int, delivery_id: int) -> bytes:
    text = (DATA / kind).read_text()
    for token, value in {
        "@RCPT@": rcpt,
        "@VERP@": verp_address(BOUNCES, SECRET, delivery_id, rcpt),
        "@ID@": str(n),
        "@HEADERS@": f"From: ML Foundations <newsletter@news.example.org>\nTo: {rcpt}",
    }.items():
        text = text.replace(token, value)
    return text.replace("\n", "\r\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    n = parser.parse_args().messages
    kinds = ["postfix-hard-5.1.1.eml"] * 18 + ["flufl-dsn_05.eml", "auto-reply.eml"]
    with tempfile.TemporaryDirectory() as tmp, start_dovecot() as imap:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        init_database(engine)
        with Session(engine) as session:
            ids = seed_subscribers(session, n, [()])
            issue = seed_issue(session, "2026-04")
            issue.send_started_at = utcnow()
            rows = [Delivery(issue_id=issue.id, subscriber_id=i, status="sent") for i in ids]
            session.add_all(rows)
            session.commit()
            delivery_ids = [row.id for row in rows]
        raws = [
            message(kinds[i % 20], f"reader{i:06d}@example.org", i, delivery_ids[i])  # type: ignore[arg-type]
            for i in range(n)
        ]
        for raw in raws:
            imap.deliver(raw)
        timings = []

        start = time.perf_counter()
        found = sum(len(read_message(raw, BOUNCES).failures) for raw in raws)
        timings.append(("parse only (flufl.bounce + DSN fields)", time.perf_counter() - start))

        start = time.perf_counter()
        with MailBoxUnencrypted("127.0.0.1", imap.port).login(USER, PASSWORD) as box:
            read = sum(1 for _ in box.fetch(mark_seen=False, bulk=100))
        timings.append(("IMAP read only (FETCH in bulks of 100)", time.perf_counter() - start))

        settings = load_settings(
            var_dir=Path(tmp),
            database_url=f"sqlite:///{tmp}/bench.db",
            bounce_address=BOUNCES,
            bounce_imap_url=imap.url,
            secret_key=SECRET,
            _env_file=None,
        )
        start = time.perf_counter()
        report = fetch_bounces(engine, settings)
        timings.append(
            ("bounces fetch end to end (read, prove, record, delete)", time.perf_counter() - start)
        )
        assert read == n and report.messages == n and report.hard + report.soft == found
        assert report.unparsed == imap.message_count() == n // 20 and report.unverified == 0

    print(f"{n} messages: {report.hard} hard, {report.soft} soft, {report.unparsed} not bounces")
    print("| step | total | per message |\n|---|---:|---:|")
    for name, seconds in timings:
        print(f"| {name} | {seconds:.2f} s | {seconds / n * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
