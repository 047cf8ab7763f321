"""The foundation: settings, migrations, init, topics, health, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import migrate
from newsletter.bootstrap import init_database
from newsletter.db import make_engine
from newsletter.models import Delivery, Issue, Paper, Subscriber, Topic
from newsletter.settings import SettingsError, load_settings
from newsletter.topics import load_taxonomy


def test_migrations_match_models(engine) -> None:
    assert migrate.current_revision(engine) == "0014"  # the head of the chain
    assert migrate.schema_differences(engine) == []


def test_init_twice_is_a_noop(engine) -> None:
    report = init_database(engine)
    assert not report.changed, report


def test_init_from_empty(tmp_path: Path, pg_cluster) -> None:
    urls = [f"sqlite:///{tmp_path / 'fresh.db'}"]
    if pg_cluster is not None:
        urls.append(pg_cluster.create_database("fresh_init"))
    for url in urls:
        engine = make_engine(url)
        first = init_database(engine)
        assert first.changed and first.revision_before is None
        assert first.topics_changed == len(load_taxonomy())
        second = init_database(engine)
        assert not second.changed
        engine.dispose()


def test_topics_synced_in_taxonomy_order(session: Session) -> None:
    topics = session.exec(select(Topic).order_by(Topic.position)).all()
    assert [t.slug for t in topics] == [s.slug for s in load_taxonomy()]
    assert "general" in [t.slug for t in topics]


def test_delivery_unique_per_issue_and_subscriber(session: Session) -> None:
    issue = Issue(month="2026-04")
    sub = Subscriber(email="a@example.org")
    session.add_all([issue, sub])
    session.commit()
    session.add(Delivery(issue_id=issue.id, subscriber_id=sub.id))
    session.commit()
    session.add(Delivery(issue_id=issue.id, subscriber_id=sub.id))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_paper_json_columns_round_trip(session: Session) -> None:
    import datetime as dt

    paper = Paper(
        title="T",
        normalized_title="t",
        summary="s",
        published=dt.date(2026, 4, 1),
        month="2026-04",
        authors=["Ada Lovelace", "Émile Borel"],
    )
    session.add(paper)
    session.commit()
    session.expire_all()
    assert session.get(Paper, paper.id).authors == ["Ada Lovelace", "Émile Borel"]


def test_healthz(settings) -> None:
    from newsletter.web.app import create_app

    client = TestClient(create_app(settings))
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    # Served without `newsletter serve`'s mail process: queued mail goes from this process.
    assert resp.json()["mail"] == {"process": "in-process", "queued": 0, "oldest_seconds": 0.0}


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NEWSLETTER_BATCH_SIZE": "5000"}, "NEWSLETTER_BATCH_SIZE"),
        ({"NEWSLETTER_MAIL_BACKEND": "pigeon"}, "NEWSLETTER_MAIL_BACKEND"),
        ({"NEWSLETTER_BASE_URL": "https://news.example.org"}, "NEWSLETTER_SECRET_KEY"),
        ({"NEWSLETTER_MAIL_BACKEND": "sendgrid"}, "SENDGRID_API_KEY"),
        ({"NEWSLETTER_SCHEDULE": "every day"}, "NEWSLETTER_SCHEDULE"),
        ({"NEWSLETTER_DATABASE_URL": "mysql://x"}, "NEWSLETTER_DATABASE_URL"),
        ({"NEWSLETTER_SMTP_URL": "http://x"}, "NEWSLETTER_SMTP_URL"),
    ],
)
def test_bad_settings_fail_with_one_line(monkeypatch, tmp_path, env, needle) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(needle) and "\n" not in message
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "topics"],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_database_url_aliases(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example/news")
    assert load_settings().database_url == "postgresql+psycopg://u:p@db.example/news"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "sqlite:///x.db")
    assert load_settings().database_url == "sqlite:///x.db"


def test_secret_key_generated_once(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    first = load_settings().secret
    assert len(first) > 40 and (tmp_path / "var" / "secret_key").exists()
    assert load_settings().secret == first


def test_cli_init_twice_and_topics(tmp_path) -> None:
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "newsletter", *a],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "revision 0014" in run("init").stdout
    assert "nothing to do" in run("init").stdout
    out = run("topics")
    assert out.returncode == 0 and out.stdout.splitlines()[0].startswith("optimization")
    assert run("no-such-command").returncode == 2
