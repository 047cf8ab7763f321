"""The editors' "start here" reading list: foundational papers for a new reader, in order.

Papers come from the archive (by exact title) or by arXiv id or link (fetched through the
arXiv API when not yet known, then imported like any paper). Every change is audited.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from newsletter import audit
from newsletter.db import session_scope
from newsletter.errors import NewsletterError
from newsletter.models import Paper, StartHereItem
from newsletter.papers.arxiv import import_arxiv_ids, parse_arxiv_reference
from newsletter.papers.validation import RecordError, normalize_title
from newsletter.settings import Settings

MAX_WHY = 300


def items(session: Session) -> list[tuple[StartHereItem, Paper]]:
    """The list as the desk edits it, in the readers' order."""
    return list(
        session.exec(
            select(StartHereItem, Paper)
            .join(Paper, col(Paper.id) == col(StartHereItem.paper_id))
            .order_by(col(StartHereItem.position), col(StartHereItem.id))
        ).all()
    )


def _checked_why(why: str) -> str:
    value = " ".join(why.split())
    if not value:
        raise NewsletterError("say in one line why a new reader should start with this paper")
    if len(value) > MAX_WHY:
        raise NewsletterError(f"the why is {len(value)} characters; keep it to {MAX_WHY}")
    return value


def _find_paper(engine: Engine, settings: Settings, reference: str, actor: str) -> Paper:
    """An archived paper by exact title, else by arXiv id or link (fetched if unknown)."""
    wanted = reference.strip()
    if not wanted:
        raise NewsletterError("paste an arXiv id or link, or a paper's title from the archive")
    with session_scope(engine) as session:
        by_title = session.exec(
            select(Paper)
            .where(
                (col(Paper.normalized_title) == normalize_title(wanted))
                | (func.lower(Paper.title) == " ".join(wanted.split()).lower())
            )
            .order_by(col(Paper.id))
        ).first()
        if by_title is not None:
            return by_title
    try:
        arxiv_id = parse_arxiv_reference(wanted)
    except RecordError:
        shown = wanted if len(wanted) <= 80 else wanted[:79] + "…"
        raise NewsletterError(
            f"no paper in the archive is titled {shown!r}, and it is not an arXiv id or link "
            "(such as 2405.01234 or https://arxiv.org/abs/2405.01234)"
        ) from None
    with session_scope(engine) as session:
        known = session.exec(select(Paper).where(Paper.arxiv_id == arxiv_id)).first()
    if known is not None:
        return known
    report = import_arxiv_ids(engine, [arxiv_id], api_url=settings.arxiv_api_url)
    if report.error is not None:
        raise NewsletterError(str(report.error))
    with session_scope(engine) as session:
        audit.record(session, actor, "papers.import", f"arXiv {arxiv_id}", "added for start here")
        paper = session.exec(select(Paper).where(Paper.arxiv_id == arxiv_id)).first()
    if paper is None:
        raise NewsletterError(f"arXiv answered, but not with paper {arxiv_id}")
    return paper


def add(engine: Engine, settings: Settings, reference: str, why: str, actor: str) -> Paper:
    """Put a paper at the end of the list; raises NewsletterError saying what is wrong."""
    why = _checked_why(why)
    paper = _find_paper(engine, settings, reference, actor)
    with session_scope(engine) as session:
        if session.exec(select(StartHereItem).where(StartHereItem.paper_id == paper.id)).first():
            raise NewsletterError(f"{paper.title!r} is already on the list")
        last = session.exec(select(func.max(StartHereItem.position))).one()
        session.add(
            StartHereItem(
                paper_id=paper.id or 0,
                position=(last if last is not None else -1) + 1,
                why=why,
                added_by=actor,
            )
        )
        audit.record(session, actor, "start_here.add", paper.title, why)
    return paper


def _get(session: Session, item_id: int) -> tuple[StartHereItem, Paper]:
    item = session.get(StartHereItem, item_id)
    if item is None:
        raise NewsletterError("that paper is no longer on the list (reload the page)")
    return item, session.get(Paper, item.paper_id)  # type: ignore[return-value]


def move(session: Session, item_id: int, offset: int, actor: str) -> None:
    """One place up (-1) or down (+1); positions are renumbered 0..n-1."""
    ordered = [item for item, _ in items(session)]
    item, paper = _get(session, item_id)
    index = next(i for i, it in enumerate(ordered) if it.id == item.id)
    target = max(0, min(len(ordered) - 1, index + offset))
    if target == index:
        return
    ordered.insert(target, ordered.pop(index))
    for position, it in enumerate(ordered):
        it.position = position
        session.add(it)
    audit.record(
        session, actor, "start_here.move", paper.title, f"from place {index + 1} to {target + 1}"
    )


def set_why(session: Session, item_id: int, why: str, actor: str) -> None:
    item, paper = _get(session, item_id)
    item.why = _checked_why(why)
    session.add(item)
    audit.record(session, actor, "start_here.why", paper.title, item.why)


def remove(session: Session, item_id: int, actor: str) -> None:
    item, paper = _get(session, item_id)
    session.delete(item)
    audit.record(session, actor, "start_here.remove", paper.title)
