"""Sending an issue to a large list, side by side with the physical limit (raw HTTP of the
same request bodies), a no-op transport, several workers and the naive per-subscriber loop.

    .venv/bin/python benchmarks/send.py [--subscribers 100000] [--variants 20] [--latency 0.1]
        [--postgres] [--workers 2] [--naive 1000] [--raw-bodies 100]

Every measured step runs in a fresh process (so its peak RSS is its own), on its own copy
of one seeded database (SQLite files, or PostgreSQL databases made from a template):

(a) plan, then one `newsletter worker` pass (`drain`: render once per variant, batches of
    1,000 through the SendGrid transport) to the fake SendGrid server, which runs in its
    own process and answers after `--latency` seconds; the pass is timed;
(b) raw HTTP: the same kind of bodies (built beforehand from the sent issue's deliveries,
    the first `--raw-bodies` of them reused in turn), POSTed on as many keep-alive
    connections as the pipeline keeps in flight to the same server: the physical limit;
(c) planning alone, then planning again (a no-op);
(d) one `newsletter worker` pass (`drain`) with a transport that sends nothing: the cost of
    claiming, personalising and recording, per worker process;
(e) the same with `--workers` worker processes at once (PostgreSQL only);
(f) the naive loop (what arxiv-sanity-lite does): per subscriber a full Jinja + MJML render
    and one API request; measured on `--naive` subscribers and scaled to the full list.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import cycle
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from newsletter.bootstrap import init_database  # noqa: E402
from newsletter.db import dispose_engines, make_engine  # noqa: E402
from newsletter.transports.base import Batch, Outcome, RecipientResult  # noqa: E402

KEY = "SG.bench-key"
MONTH = "2026-04"
BATCH = 1000
CONCURRENCY = 4


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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (0, 0 elsewhere):
    how busy all cores were during a step, the worker, PostgreSQL and the fake together."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def settings_for(root: str, url: str, **kw: object):
    from newsletter.settings import load_settings

    return load_settings(
        var_dir=Path(root) / "var",
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        postal_address="1 Benchmark Road, Testville",
        batch_size=BATCH,
        send_concurrency=CONCURRENCY,
        _env_file=None,
        **kw,
    )


# -- the database copies ---------------------------------------------------------------
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

    def drop(self, url: str) -> None:
        """Free the disk of a copy that is no longer needed (1M rows are ~1 GB each)."""
        if self.cluster is None:
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
            return
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.cluster.port} user=postgres dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        dispose_engines()
        if self.cluster is not None:
            self.cluster.stop()


def build_template(url: str, subscribers: int, variants: int) -> dict[str, float]:
    from newsletter.testing.sample_send import (
        issue_topics,
        seed_issue,
        seed_subscribers,
        topic_sets,
    )

    engine = make_engine(url)
    init_database(engine)
    with Session(engine) as session:
        topics = issue_topics(session, 5)
        seed_issue(session, MONTH, topics, per_topic=3)
        seed_subscribers(session, subscribers, topic_sets(topics, variants))
    engine.dispose()
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
    return {"rss": peak_rss_mb()}


# -- the fake SendGrid server, in its own process ------------------------------------------
def serve_fake(conn: Connection, latency: float) -> None:
    from newsletter.testing.fake_sendgrid import FakeSendgrid

    with FakeSendgrid(KEY, latency=latency, record=False) as fake:
        conn.send(fake.url)
        while (command := conn.recv()) != "stop":
            if command == "count":
                conn.send((fake.state.accepted_count, fake.state.answers[202]))
            elif command == "reset":
                fake.reset()
                conn.send(True)


class FakeProcess:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve_fake, args=(child, latency), daemon=True)
        self.process.start()
        self.url: str = self.conn.recv()

    def counts(self) -> tuple[int, int]:
        self.conn.send("count")
        return self.conn.recv()

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


# -- the measured steps (each in a fresh process) -------------------------------------------
def step_send(root: str, url: str, fake_url: str) -> dict[str, float]:
    """Plan, then one worker pass through the SendGrid transport (timed apart)."""
    from newsletter.delivery import begin_sending, drain, new_worker_id, plan_deliveries
    from newsletter.models import Issue
    from newsletter.transports.sendgrid import SendgridTransport

    settings = settings_for(root, url)
    engine = make_engine(url)
    started = time.perf_counter()
    with Session(engine, expire_on_commit=False) as session:
        issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
        assert begin_sending(session, issue)
        plan = plan_deliveries(session, issue, settings)
    planned = time.perf_counter()
    transport = SendgridTransport(KEY, fake_url)
    done = drain(
        engine, settings, worker_id=new_worker_id(), stop=threading.Event(), transport=transport
    )
    finished = time.perf_counter()
    assert done == plan.planned, (done, plan)
    return {
        "seconds": finished - planned,
        "plan": planned - started,
        "recipients": done,
        "requests": transport.requests,
        "variants": len(plan.variants),
        "rss": peak_rss_mb(),
    }


def step_plan(root: str, url: str) -> dict[str, float]:
    from newsletter.delivery import begin_sending, plan_deliveries
    from newsletter.models import Issue

    settings = settings_for(root, url)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
        assert begin_sending(session, issue)
        started = time.perf_counter()
        first = plan_deliveries(session, issue, settings)
        plan_s = time.perf_counter() - started
        started = time.perf_counter()
        again = plan_deliveries(session, issue, settings)
        replan_s = time.perf_counter() - started
    assert again.planned == 0 and again.already_planned == first.planned
    return {
        "seconds": plan_s,
        "replan": replan_s,
        "recipients": first.planned,
        "rss": peak_rss_mb(),
    }


def step_drain(root: str, url: str) -> dict[str, float]:
    from newsletter.delivery import drain, new_worker_id

    settings = settings_for(root, url)
    engine = make_engine(url)
    transport = NoopTransport()
    stop = threading.Event()
    busy, total = machine_ticks()
    cpu = cpu_seconds()
    start = time.time()
    done = drain(engine, settings, worker_id=new_worker_id(), stop=stop, transport=transport)
    end = time.time()
    busy2, total2 = machine_ticks()
    return {
        "start": start,
        "end": end,
        "recipients": done,
        "rss": peak_rss_mb(),
        "cpu": cpu_seconds() - cpu,
        "machine_busy": (busy2 - busy) / max(1, total2 - total),
    }


def build_bodies(root: str, url: str, limit: int) -> list[bytes]:
    """Request bodies of the sent issue, built the pipeline's way, not timed."""
    from newsletter.models import Delivery, Issue
    from newsletter.rendering import RecipientFields, list_headers, render_issue_variant
    from newsletter.transports.base import Recipient
    from newsletter.transports.sendgrid import sendgrid_payload
    from subscribers.models import Subscriber

    settings = settings_for(root, url)
    engine = make_engine(url)
    bodies: list[bytes] = []
    with Session(engine) as session:
        issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
        variants = session.execute(select(Delivery.variant).distinct()).scalars().all()
        for variant in sorted(variants):
            rendered = render_issue_variant(session, issue, variant, settings)
            fields = RecipientFields(settings, issue, variant)
            rows = session.execute(
                select(Delivery.id, Subscriber.id, Subscriber.email, Subscriber.token_version)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.variant == variant)
                .order_by(Delivery.id)
                .limit(BATCH)
            ).all()
            recipients = []
            for delivery_id, sid, email, version in rows:
                subs, headers = fields(sid, version, email)
                recipients.append(Recipient(email, subs, headers, delivery_id))
            batch = Batch(
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                recipients=recipients,
                from_addr=settings.from_,
                headers=list_headers(settings),
                categories=(MONTH,),
            )
            bodies.append(json.dumps(sendgrid_payload(batch)).encode())
            if len(bodies) >= limit:
                break
    return bodies


def step_raw_http(root: str, url: str, fake_url: str, requests: int, limit: int) -> dict:
    """POST `requests` bodies on CONCURRENCY keep-alive connections: nothing but the wire."""
    bodies = build_bodies(root, url, limit)
    host = urlsplit(fake_url)
    pending = cycle(bodies)
    lock = threading.Lock()
    left = [requests]
    sizes: list[int] = []

    def sender() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
                body = next(pending)
            conn.request("POST", "/v3/mail/send", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 202, response.status
            sizes.append(len(body))
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "seconds": time.perf_counter() - started,
        "mean_body_mb": sum(sizes) / len(sizes) / 1e6,
        "rss": peak_rss_mb(),
    }


def step_naive(root: str, url: str, fake_url: str, count: int) -> dict[str, float]:
    """Per subscriber: full render + one request, sequentially (arxiv-sanity-lite's loop)."""
    from newsletter.issues import load_issue_contents
    from newsletter.models import Issue
    from newsletter.rendering import (
        issue_topic_slugs,
        recipient_headers,
        recipient_substitutions,
        variant_for,
    )
    from newsletter.rendering.issue_email import compile_issue_variant, read_issue_view
    from newsletter.substitution import fill
    from newsletter.transports.base import Recipient
    from newsletter.transports.sendgrid import SendgridTransport
    from subscribers.models import Subscriber, SubscriberTopic

    settings = settings_for(root, url)
    engine = make_engine(url)
    transport = SendgridTransport(KEY, fake_url)
    with Session(engine) as session:
        issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
        people = list(session.execute(select(Subscriber).limit(count)).scalars())
        ids = [p.id for p in people]
        chosen: dict[int, list[str]] = {}
        for sid, slug in session.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
                SubscriberTopic.subscriber_id.in_(ids)
            )
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
                html=fill(email.html, subs),
                text=fill(email.text, subs),
                recipients=[Recipient(person.email, headers=recipient_headers(settings, person))],
                from_addr=settings.from_,
            )
            result = transport.send_batch(batch)[0]
            assert result.outcome is Outcome.SENT, result
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "recipients": len(people), "rss": peak_rss_mb()}


def in_child(fn: Any, *args: Any) -> Any:
    """Run one step in a fresh interpreter, so its peak RSS is its own."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def workers_at_once(fn: Any, n: int, *args: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        return [f.result() for f in [pool.submit(fn, *args) for _ in range(n)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--naive", type=int, default=1000, help="subscribers in the naive loop")
    parser.add_argument("--latency", type=float, default=0.1, help="fake SendGrid latency (s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in (e)")
    parser.add_argument("--raw-bodies", type=int, default=100, help="distinct raw HTTP bodies")
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL cluster, not SQLite"
    )
    args = parser.parse_args()
    n = args.subscribers

    root = Path(tempfile.mkdtemp(prefix="bench-send-"))
    dbs = Databases(root, args.postgres)
    fake = FakeProcess(args.latency)
    r = str(root)
    try:
        t0 = time.perf_counter()
        in_child(build_template, dbs.template, n, args.variants)
        print(
            f"seeded {n:,} subscribers over {args.variants} topic sets in "
            f"{time.perf_counter() - t0:.1f}s (not timed below)",
            flush=True,
        )

        url = dbs.copy("sendgrid")
        sendgrid = in_child(step_send, r, url, fake.url)
        accepted, accepted_requests = fake.counts()
        assert accepted == n, accepted
        print(f"(a) worker via fake SendGrid: {sendgrid['seconds']:.1f}s", flush=True)
        fake.reset()
        raw = in_child(step_raw_http, r, url, fake.url, accepted_requests, args.raw_bodies)
        print(f"(b) raw HTTP, {accepted_requests} bodies: {raw['seconds']:.1f}s", flush=True)
        naive = in_child(step_naive, r, url, fake.url, args.naive)
        print(f"(f) naive loop on {args.naive:,}: {naive['seconds']:.1f}s", flush=True)
        dbs.drop(url)

        url = dbs.copy("noop")
        plan = in_child(step_plan, r, url)
        print(f"(c) plan {plan['seconds']:.1f}s, re-plan {plan['replan']:.1f}s", flush=True)
        one = in_child(step_drain, r, url)
        assert one["recipients"] == n, one
        one["seconds"] = one["end"] - one["start"]
        print(f"(d) one worker, no-op transport: {one['seconds']:.1f}s", flush=True)
        dbs.drop(url)

        many = None
        if args.postgres and args.workers > 1:
            url = dbs.copy("workers")
            in_child(step_plan, r, url)
            results = workers_at_once(step_drain, args.workers, r, url)
            assert sum(x["recipients"] for x in results) == n, results
            many = {
                "seconds": max(x["end"] for x in results) - min(x["start"] for x in results),
                "rss": max(x["rss"] for x in results),
                "shares": [x["recipients"] for x in results],
                "cpu": [x["cpu"] for x in results],
                "machine_busy": sum(x["machine_busy"] for x in results) / len(results),
            }
            print(
                f"(e) {args.workers} workers, no-op transport: {many['seconds']:.1f}s", flush=True
            )
            dbs.drop(url)
    finally:
        fake.stop()
        dbs.close()
        shutil.rmtree(root, ignore_errors=True)

    scale = n / naive["recipients"]
    naive_total = naive["seconds"] * scale
    rows = [
        ("(a) 1 worker → fake SendGrid", sendgrid["seconds"], sendgrid["rss"]),
        (f"(b) raw HTTP, same bodies, {CONCURRENCY} in flight", raw["seconds"], raw["rss"]),
        ("(c) plan deliveries", plan["seconds"], plan["rss"]),
        ("(c) plan again (no-op)", plan["replan"], plan["rss"]),
        ("(d) 1 worker, no-op transport", one["seconds"], one["rss"]),
    ]
    if many:
        rows.append((f"(e) {args.workers} workers, no-op transport", many["seconds"], many["rss"]))
    rows.append(
        (
            f"(f) naive loop ({naive['recipients']:,} measured, ×{scale:g})",
            naive_total,
            naive["rss"],
        )
    )
    print()
    print(
        f"{n:,} subscribers, {sendgrid['variants']} variants, {args.latency * 1000:.0f} ms per "
        f"SendGrid request, batch {BATCH}, concurrency {CONCURRENCY}, "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}; "
        f"{sendgrid['requests']} requests of {raw['mean_body_mb']:.2f} MB"
    )
    print(f"{'run':<50} {'seconds':>9} {'recipients/s':>13} {'peak RSS MB':>12}")
    for label, seconds, rss in rows:
        print(f"{label:<50} {seconds:>9.1f} {n / seconds:>13,.0f} {rss:>12.0f}")
    print()
    fraction = raw["seconds"] / sendgrid["seconds"]
    print(
        f"sending runs at {fraction:.0%} of raw HTTP ({1 / fraction:.2f}× its time; "
        f"target within 2×): {'yes' if 1 / fraction <= 2 else 'NO'}; with its planning "
        f"({sendgrid['plan']:.1f}s) {raw['seconds'] / (sendgrid['seconds'] + sendgrid['plan']):.0%}"
    )
    print(
        f"plan {plan['seconds']:.1f}s (target < 20 s), peak RSS {plan['rss']:.0f} MB "
        f"(target < 200 MB); re-plan {plan['replan']:.1f}s"
    )
    cores = os.cpu_count() or 1
    print(
        f"one worker drains {n / one['seconds']:,.0f} recipients/s (target ≥ 25,000), "
        f"peak RSS {one['rss']:.0f} MB (target < 200 MB); its CPU {one['cpu']:.1f}s, "
        f"the machine's {cores} cores {one['machine_busy']:.0%} busy"
    )
    if many:
        print(
            f"{args.workers} workers: {n / many['seconds']:,.0f} recipients/s "
            f"({one['seconds'] / many['seconds']:.2f}× one worker), shares {many['shares']}, "
            f"every recipient exactly once; their CPU "
            f"{' + '.join(f'{c:.1f}s' for c in many['cpu'])}, the machine's {cores} cores "
            f"{many['machine_busy']:.0%} busy"
        )
    print(f"naive vs pipeline: {naive_total / sendgrid['seconds']:.0f}x slower per subscriber")


if __name__ == "__main__":
    main()
