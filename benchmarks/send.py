"""Sending 100,000 subscribers over 20 variants, side by side with a no-op transport and the
naive per-subscriber loop, in one process.

    .venv/bin/python benchmarks/send.py [--subscribers 100000] [--naive 1000] [--latency 0.1]

(a) pipeline: plan, render once per variant, batches of 1,000 through the SendGrid transport
    to the fake SendGrid server (real HTTP on 127.0.0.1) answering after `--latency` seconds;
(b) the same pipeline with a transport that sends nothing (the floor of DB + rendering work);
(c) the naive loop (what arxiv-sanity-lite does): per subscriber, a full Jinja + MJML render
    and one API request; measured on `--naive` subscribers and scaled to the full list.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from newsletter.bootstrap import init_database  # noqa: E402
from newsletter.db import dispose_engines, make_engine  # noqa: E402
from newsletter.delivery import send_issue  # noqa: E402
from newsletter.issues import load_issue_contents  # noqa: E402
from newsletter.models import Issue  # noqa: E402
from newsletter.rendering import (  # noqa: E402
    clear_render_cache,
    issue_topic_slugs,
    recipient_headers,
    recipient_substitutions,
    variant_for,
)
from newsletter.rendering.issue_email import (  # noqa: E402
    compile_issue_variant,
    read_issue_view,
)
from newsletter.settings import load_settings  # noqa: E402
from newsletter.testing.fake_sendgrid import FakeSendgrid  # noqa: E402
from newsletter.testing.sample_send import (  # noqa: E402
    issue_topics,
    seed_issue,
    seed_subscribers,
    topic_sets,
)
from newsletter.transports.base import (  # noqa: E402
    Batch,
    Outcome,
    Recipient,
    RecipientResult,
    substitute,
)
from newsletter.transports.sendgrid import SendgridTransport  # noqa: E402
from subscribers.models import Subscriber, SubscriberTopic  # noqa: E402

KEY = "SG.bench-key"
MONTH = "2026-04"


class NoopTransport:
    """Accepts every recipient at once: what the pipeline costs without a provider."""

    name = "noop"

    def __init__(self) -> None:
        self.requests = 0

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        self.requests += 1
        return [
            RecipientResult(r.email, Outcome.SENT, message_id="noop", delivery_id=r.delivery_id)
            for r in batch.recipients
        ]

    def close(self) -> None:
        pass


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Databases:
    """A seeded template database and fresh copies of it: SQLite files, or PostgreSQL
    databases created from a template in a throwaway cluster."""

    def __init__(self, root: Path, postgres: bool) -> None:
        self.root = root
        self.cluster = None
        if postgres:
            from newsletter.testing.postgres import start_cluster

            self.cluster = start_cluster()
        self.template = self._create("template")

    def _create(self, name: str, template: str | None = None) -> str:
        if self.cluster is None:
            path = self.root / f"{name}.db"
            if template is not None:
                shutil.copyfile(self.root / f"{template}.db", path)
            return f"sqlite:///{path}"
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.cluster.port} user=postgres dbname=postgres",
            autocommit=True,
        ) as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.cluster.url(name)

    def copy(self, name: str) -> str:
        dispose_engines()
        return self._create(name, "template")

    def close(self) -> None:
        dispose_engines()
        if self.cluster is not None:
            self.cluster.stop()


def build_template(url: str, subscribers: int, variants: int) -> str:
    engine = make_engine(url)
    init_database(engine)
    with Session(engine) as session:
        topics = issue_topics(session, 5)
        seed_issue(session, MONTH, topics, per_topic=3)
        seed_subscribers(session, subscribers, topic_sets(topics, variants))
    engine.dispose()
    return url


def settings_for(root: Path, url: str, **kw: object):
    return load_settings(
        var_dir=root / "var",
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        postal_address="1 Benchmark Road, Testville",
        batch_size=1000,
        send_concurrency=4,
        _env_file=None,
        **kw,
    )


def run_pipeline(root: Path, dbs: Databases, name: str, transport) -> dict[str, float]:
    settings = settings_for(root, dbs.copy(name))
    engine = make_engine(settings.database_url)
    clear_render_cache()
    started = time.perf_counter()
    report = send_issue(engine, settings, MONTH, transport=transport)
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert report.issue_status == "sent", report
    return {
        "recipients": report.run.sent,
        "seconds": elapsed,
        "requests": transport.requests,
        "variants": len(report.plan.variants) if report.plan else 0,
        "rss": peak_rss_mb(),
    }


def run_naive(root: Path, dbs: Databases, fake: FakeSendgrid, count: int) -> dict[str, float]:
    """Per subscriber: full render + one request, sequentially (arxiv-sanity-lite's loop)."""
    settings = settings_for(root, dbs.copy("naive"))
    engine = make_engine(settings.database_url)
    transport = SendgridTransport(KEY, fake.url)
    with Session(engine) as session:
        issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
        people = list(session.execute(select(Subscriber).limit(count)).scalars())
        chosen: dict[int, list[str]] = {}
        for sid, slug in session.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug)
        ):
            chosen.setdefault(sid, []).append(slug)
        started = time.perf_counter()
        view = read_issue_view(session, issue, settings)  # read once: generous to the loop
        in_issue = issue_topic_slugs(load_issue_contents(session, issue).entries)
        for person in people:
            variant = variant_for(chosen.get(person.id, ()), in_issue)
            email = compile_issue_variant(view, variant, settings)
            subs = recipient_substitutions(settings, person, issue, variant)
            batch = Batch(
                subject=email.subject,
                html=substitute(email.html, subs),
                text=substitute(email.text, subs),
                recipients=[Recipient(person.email, headers=recipient_headers(settings, person))],
                from_addr=settings.from_,
            )
            result = transport.send_batch(batch)[0]
            assert result.outcome is Outcome.SENT, result
        elapsed = time.perf_counter() - started
    engine.dispose()
    return {
        "recipients": len(people),
        "seconds": elapsed,
        "requests": transport.requests,
        "rss": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--naive", type=int, default=1000, help="subscribers in the naive loop")
    parser.add_argument("--latency", type=float, default=0.1, help="fake SendGrid latency (s)")
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL cluster, not SQLite"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-send-"))
    dbs = Databases(root, args.postgres)
    try:
        t0 = time.perf_counter()
        build_template(dbs.template, args.subscribers, args.variants)
        print(
            f"seeded {args.subscribers:,} subscribers over {args.variants} topic sets "
            f"in {time.perf_counter() - t0:.1f}s (not timed below)",
            flush=True,
        )
        with FakeSendgrid(KEY, latency=args.latency, record=False) as fake:
            sendgrid = run_pipeline(root, dbs, "sendgrid", SendgridTransport(KEY, fake.url))
            assert fake.state.accepted_count == args.subscribers, fake.state.accepted_count
            print(f"pipeline via fake SendGrid: {sendgrid['seconds']:.1f}s", flush=True)
            noop = run_pipeline(root, dbs, "noop", NoopTransport())
            print(f"pipeline via no-op transport: {noop['seconds']:.1f}s", flush=True)
            naive = run_naive(root, dbs, fake, args.naive)
            print(f"naive loop on {args.naive:,}: {naive['seconds']:.1f}s", flush=True)
    finally:
        dbs.close()
        shutil.rmtree(root, ignore_errors=True)

    scale = args.subscribers / naive["recipients"]
    naive_total = naive["seconds"] * scale
    rows = [
        ("pipeline → fake SendGrid", sendgrid, sendgrid["seconds"], sendgrid["requests"]),
        ("pipeline → no-op transport", noop, noop["seconds"], noop["requests"]),
        (
            f"naive loop (measured {naive['recipients']:,}, ×{scale:g})",
            naive,
            naive_total,
            naive["requests"] * scale,
        ),
    ]
    print()
    print(
        f"{args.subscribers:,} subscribers, {sendgrid['variants']} variants, "
        f"{args.latency * 1000:.0f} ms per SendGrid request, batch 1000, concurrency 4, "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}"
    )
    print(f"{'run':<44} {'total s':>9} {'recipients/s':>13} {'requests':>9} {'peak RSS MB':>12}")
    for label, r, total, requests in rows:
        rate = args.subscribers / total
        print(f"{label:<44} {total:>9.1f} {rate:>13,.0f} {requests:>9,.0f} {r['rss']:>12.0f}")
    print()
    print(
        f"pipeline vs no-op: {sendgrid['seconds'] / noop['seconds']:.2f}x the time (target ≤ 1.5x)"
    )
    print(
        f"naive vs pipeline: {naive_total / sendgrid['seconds']:.0f}x slower per subscriber "
        "(target ≥ 100x)"
    )
    print(
        f"{args.subscribers:,} under 60 s: {'yes' if sendgrid['seconds'] < 60 else 'NO'}; "
        "peak RSS (whole process, "
        f"after the pipeline run): {sendgrid['rss']:.0f} MB (target < 300 MB)"
    )


if __name__ == "__main__":
    main()
