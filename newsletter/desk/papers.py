"""Papers on the desk: months with counts, importing an uploaded file exactly as
`newsletter papers import` does (same validation, same messages, all or nothing), and
adding one paper to a draft by its arXiv id or link."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.db import session_scope
from newsletter.desk import editing
from newsletter.errors import NewsletterError
from newsletter.models import Paper
from newsletter.papers.arxiv import import_arxiv_ids, parse_arxiv_reference
from newsletter.papers.store import FileImportReport, import_paths
from newsletter.settings import Settings


def months(session: Session) -> list[tuple[str, int]]:
    """(YYYY-MM, papers) newest first."""
    rows = session.exec(
        select(Paper.month, func.count()).group_by(Paper.month).order_by(Paper.month.desc())
    ).all()
    return [(m, int(n)) for m, n in rows]


def _safe_name(filename: str) -> str:
    name = Path(filename or "upload").name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "upload"


def import_upload(
    engine: Engine, filename: str, data: bytes, fmt: str, actor: str
) -> FileImportReport:
    """Import one uploaded file under its own name (so messages name it as the CLI would)."""
    with tempfile.TemporaryDirectory(prefix="newsletter-upload-") as tmp:
        path = Path(tmp) / _safe_name(filename)
        path.write_bytes(data)
        report = import_paths(engine, [path], fmt)[0]
    report.file = Path(path.name)
    if report.error is not None:
        report.error = report.error.located(file=path.name)
    with session_scope(engine) as session:
        outcome = (
            f"failed: {report.error}"
            if report.error
            else f"{report.added} added, {report.updated} updated, {report.skipped} unchanged"
        )
        audit.record(session, actor, "papers.import", path.name, outcome[:2000])
        if report.error is None and report.changed:
            revisions.refresh_drafts(session, actor, f"papers imported from {path.name}")
    return report


def add_by_arxiv(
    engine: Engine, settings: Settings, month: str, reference: str, actor: str
) -> Paper:
    """An arXiv id or link pasted on the draft: fetched through the arXiv API (unless the
    paper is already known), validated and tagged like any import, then put in the draft."""
    arxiv_id = parse_arxiv_reference(reference)
    with session_scope(engine) as session:
        known = session.exec(select(Paper).where(Paper.arxiv_id == arxiv_id)).first()
    if known is None:
        report = import_arxiv_ids(engine, [arxiv_id], api_url=settings.arxiv_api_url)
        if report.error is not None:
            raise NewsletterError(str(report.error))
        with session_scope(engine) as session:
            audit.record(
                session, actor, "papers.import", f"arXiv {arxiv_id}", "added by id on the desk"
            )
    with session_scope(engine) as session:
        paper = session.exec(select(Paper).where(Paper.arxiv_id == arxiv_id)).first()
        if paper is None:
            raise NewsletterError(f"arXiv answered, but not with paper {arxiv_id}")
        editing.add_paper(session, month, paper.id, actor, any_age=True)  # type: ignore[arg-type]
        session.expunge(paper)
    return paper
