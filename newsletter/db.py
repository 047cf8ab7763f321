"""One engine per database URL, and sessions over it.

SQLite runs in WAL mode with a busy timeout because the web, clock and worker processes
share one file; PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_readers: dict[int, tuple[Engine, Engine]] = {}


def _set_sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Deleted content is overwritten with zeros (an erase must leave no copy in the file);
    # some builds default to it, the project does not rely on that.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


READ_ONLY_OPTION = "newsletter_read_only"


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # Writers take the write lock at BEGIN so two of them queue on busy_timeout instead of
    # one failing with "database is locked" when it upgrades a read transaction. Readers
    # (`read_session`) begin deferred: in WAL mode they read a snapshot beside a writer
    # and never wait for one.
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Build an engine with the pragmas and pool settings this service relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        # pysqlite's own transaction handling is turned off so BEGIN IMMEDIATE is ours.
        event.listen(engine, "connect", _set_sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine(url: str) -> Engine:
    """The shared engine for `url` (engines are pools; one per process and URL)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _readers.clear()


_write_gates: dict[int, tuple[Engine, threading.RLock]] = {}
_gates_lock = threading.Lock()


def _write_gate(engine: Engine) -> threading.RLock | None:
    """SQLite: one lock per engine that this process's writers queue on, in turn.

    Without it, threads that find SQLite's write lock taken sleep in its busy handler
    (1, 2, 5 ... 100 ms) and may lose to newcomers again and again: under a burst of 50
    sign-ups some waited seconds. Blocked on this lock instead they wake as it is released.
    Other processes still meet at SQLite's own lock (busy_timeout).
    """
    if engine.dialect.name != "sqlite":
        return None
    with _gates_lock:
        found = _write_gates.get(id(engine))
        if found is None or found[0] is not engine:
            found = _write_gates[id(engine)] = (engine, threading.RLock())
    return found[1]


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    gate = _write_gate(engine)
    # Past the busy timeout, go on anyway: SQLite's own lock still decides.
    held = gate.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000) if gate is not None else False
    try:
        with Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if held:
            gate.release()  # type: ignore[union-attr]


def reader(engine: Engine) -> Engine:
    """The same engine (same pool) for transactions that only read: on SQLite they do not
    take the write lock, so pages stay fast while an import or a send writes."""
    found = _readers.get(id(engine))
    if found is None or found[0] is not engine:
        found = _readers[id(engine)] = (
            engine,
            engine.execution_options(**{READ_ONLY_OPTION: True}),
        )
    return found[1]


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for pages and reports that only read (nothing is committed)."""
    with Session(reader(engine), expire_on_commit=False) as session:
        yield session


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query (without waiting for a writer)."""
    try:
        with reader(engine).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
