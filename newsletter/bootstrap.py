"""Setting up a database: migrations plus the topic taxonomy, safe to run any number of times."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from newsletter import migrate
from newsletter.db import session_scope
from newsletter.topics import sync_topics


@dataclass(frozen=True)
class InitReport:
    revision_before: str | None
    revision_after: str | None
    topics_changed: int

    @property
    def changed(self) -> bool:
        return self.revision_before != self.revision_after or self.topics_changed > 0


def init_database(engine: Engine) -> InitReport:
    """Migrate to the newest schema and sync topics; a second run changes nothing."""
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        changed = sync_topics(session)
    return InitReport(before, migrate.current_revision(engine), changed)
