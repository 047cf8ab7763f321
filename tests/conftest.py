"""Shared fixtures: real SQLite and real PostgreSQL databases, migrated, one per test.

PostgreSQL runs as a throwaway cluster started once per test process. Without it the
PostgreSQL half of each test is skipped with the reason, except under CI=true, where a
missing PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner, Result

from newsletter.bootstrap import init_database
from newsletter.db import dispose_engines, make_engine
from newsletter.settings import Settings, load_settings
from newsletter.testing.postgres import PostgresCluster, PostgresUnavailable, start_cluster

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright, shared by every browser test of this process.

    Without Chromium the browser tests are skipped with how to get it, except under CI=true,
    where a missing browser fails the run as a missing PostgreSQL does. Playwright never
    downloads a browser of its own here.
    """
    if not CHROMIUM.exists():
        reason = f"Debian's Chromium ({CHROMIUM}) is not installed: apt-get install chromium"
        if IN_CI:
            pytest.fail(f"Chromium is required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, to inject into pages (see newsletter.testing.accessibility)."""
    from newsletter.testing.accessibility import AXE_JS

    if not AXE_JS.exists():
        reason = f"axe-core ({AXE_JS}) is not installed: `make install` runs npm ci"
        if IN_CI:
            pytest.fail(f"axe-core is required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    return AXE_JS.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}", pytrace=False)
        yield None
        return
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster | None) -> str | None:
    """Name of a migrated, topic-synced database that each test copies."""
    if pg_cluster is None:
        return None
    name = "newsletter_template"
    engine = make_engine(pg_cluster.create_database(name))
    init_database(engine)
    engine.dispose()
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    init_database(engine)
    engine.dispose()
    return path


def fresh_database_url(
    backend: str,
    tmp_path: Path,
    sqlite_template: Path,
    pg_cluster: PostgresCluster | None,
    pg_template: str | None,
) -> str:
    """A new, migrated database of the given backend, private to the caller."""
    if backend == "sqlite":
        target = tmp_path / f"newsletter-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    if pg_cluster is None:
        pytest.skip("PostgreSQL not available here (initdb not found); set CI=true to require it")
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        f"host=127.0.0.1 port={pg_cluster.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    return pg_cluster.url(name)


@pytest.fixture(params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    pg_cluster: PostgresCluster | None,
    pg_template: str | None,
) -> Iterator[str]:
    """A migrated empty database (topics synced), once on SQLite and once on PostgreSQL."""
    url = fresh_database_url(request.param, tmp_path, sqlite_template, pg_cluster, pg_template)
    yield url
    dispose_engines()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        secret_key="test-secret-key-not-for-production",
        postal_address="1 Test Street, Testville",
        _env_file=None,
    )


@pytest.fixture
def cli_env(settings: Settings) -> Callable[..., dict[str, str]]:
    """Build the environment of a `python -m newsletter` subprocess on this test's database.

    The caller's own NEWSLETTER_*/SENDGRID_* variables are dropped; keywords add or override.
    """

    def build(**extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
        }
        env.update(
            NEWSLETTER_DATABASE_URL=settings.database_url,
            NEWSLETTER_VAR_DIR=str(settings.var_dir),
            NEWSLETTER_SECRET_KEY=settings.secret_key,
            NEWSLETTER_POSTAL_ADDRESS=settings.postal_address,
            COLUMNS="200",
        )
        env.update(extra)
        return env

    return build


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """Invoke the `newsletter` app in-process (Typer's runner) on this test's database."""
    from newsletter.cli import app
    from newsletter.settings import get_settings

    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NEWSLETTER_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    from newsletter.db import get_engine

    yield get_engine(settings.database_url)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s
