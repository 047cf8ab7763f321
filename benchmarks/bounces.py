"""Reading a bounce mailbox after a large send: 1,000 messages in a throwaway Dovecot
(900 hard DSNs, 50 soft, 50 auto-replies) for 1,000 subscribers on SQLite.

Side by side: parsing alone (flufl.bounce + the DSN fields), reading the mailbox over IMAP
alone, and `bounces fetch` end to end (read, record each bounce, suppress, delete).

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
from newsletter.bounces.dsn import read_bounce
from newsletter.bounces.mailbox import fetch_bounces
from newsletter.db import make_engine
from newsletter.settings import load_settings
from newsletter.testing.dovecot import PASSWORD, USER, start_dovecot
from newsletter.testing.sample_send import seed_subscribers
from newsletter.verp import verp_address

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"
BOUNCES = "bounces@news.example.org"


def message(kind: str, rcpt: str, n: int) -> bytes:
    text = (DATA / kind).read_text()
    for token, value in {
        "@RCPT@": rcpt,
        "@VERP@": verp_address(BOUNCES, rcpt),
        "@ID@": str(n),
        "@HEADERS@": f"From: ML Foundations <newsletter@news.example.org>\nTo: {rcpt}",
    }.items():
        text = text.replace(token, value)
    return text.replace("\n", "\r\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    n = parser.parse_args().messages
    kinds = ["postfix-hard-5.1.1.eml"] * 18 + ["postfix-soft-4.2.2.eml", "auto-reply.eml"]
    raws = [message(kinds[i % 20], f"reader{i:06d}@example.org", i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp, start_dovecot() as imap:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        init_database(engine)
        with Session(engine) as session:
            seed_subscribers(session, n, [()])
            session.commit()
        for raw in raws:
            imap.deliver(raw)
        rows = []

        start = time.perf_counter()
        found = sum(len(read_bounce(raw, BOUNCES)) for raw in raws)
        rows.append(("parse only (flufl.bounce + DSN fields)", time.perf_counter() - start))

        start = time.perf_counter()
        with MailBoxUnencrypted("127.0.0.1", imap.port).login(USER, PASSWORD) as box:
            read = sum(1 for _ in box.fetch(mark_seen=False, bulk=100))
        rows.append(("IMAP read only (FETCH in bulks of 100)", time.perf_counter() - start))

        settings = load_settings(
            var_dir=Path(tmp),
            database_url=f"sqlite:///{tmp}/bench.db",
            bounce_address=BOUNCES,
            bounce_imap_url=imap.url,
            _env_file=None,
        )
        start = time.perf_counter()
        report = fetch_bounces(engine, settings)
        rows.append(
            ("bounces fetch end to end (read, record, delete)", time.perf_counter() - start)
        )
        assert read == n and report.messages == n and report.hard + report.soft == found
        assert report.unparsed == imap.message_count() == n // 20

    print(f"{n} messages: {report.hard} hard, {report.soft} soft, {report.unparsed} not bounces")
    print("| step | total | per message |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} s | {seconds / n * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
