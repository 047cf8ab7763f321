"""Drafting the month's plain-language summaries with a language model, and what became of them.

Papers from feeds and arXiv bring only an abstract; the newsletter promises "a practical,
plain-language summary" for each. `draft_papers` asks the configured model once per paper
that has no human-written summary (`language_model`), stores each draft with its provenance
and caches it per (paper, prompt version, model, abstract hash): nothing is asked twice
unless the abstract changes or an editor asks for a redraft. What a draft does depends on
`NEWSLETTER_LLM_SUMMARIES`:

- `off` (the default): nothing is drafted and no connection is ever opened.
- `review`: drafts wait for an editor (the desk's Accept, Edit, Redraft); the email shows
  only accepted summaries, the rest keep the abstract's opening.
- `auto`: a draft becomes the paper's summary as written (still marked unreviewed on the
  desk), through `revisions.refresh_drafts`, so an approval of the old text is withdrawn.

The model's topics replace the keyword tagger's only where the tagger was unsure (the paper
went to `general`); elsewhere the desk offers them beside the tagger's. The relevance score
joins the ranking that decides the email's caps (`draft_status.relevance_bonus`). A failure
never blocks a send: the paper keeps its fallback and the job run says "drafted 212, 3
failed".
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.db import session_scope
from newsletter.models import (
    DraftStatus,
    Issue,
    IssuePaper,
    IssueStatus,
    JobRun,
    Paper,
    PaperTopic,
    SummaryDraft,
    Topic,
    utcnow,
)
from newsletter.papers.draft_status import current_drafts, has_human_summary, normal_text
from newsletter.papers.language_model import (
    PROMPT_VERSION,
    Answer,
    LanguageModel,
    PaperText,
)
from newsletter.papers.language_model import (
    Topic as OfferedTopic,
)
from newsletter.settings import Settings
from newsletter.topics import GENERAL_TOPIC

JOB = "draft-summaries"
# An issue that went (or is going) out: its papers' words are what readers got.
GONE_OUT = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)


@dataclass
class DraftReport:
    """What one drafting run did (the CLI's last line and the job run's message)."""

    mode: str
    model: str = ""
    drafted: int = 0
    failed: int = 0
    cached: int = 0  # already drafted for this abstract, prompt version and model
    human: int = 0  # a person wrote (or accepted) the summary: never sent to the model
    gone_out: int = 0  # listed in an issue that went out: its words are fixed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    applied: int = 0  # auto mode: drafts that became the paper's summary
    switched: int = 0  # earlier drafts moved into (auto) or out of (review) the email
    retopiced: int = 0  # papers the tagger left in `general` that took the model's topics
    errors: list[str] = field(default_factory=list)  # "title: reason", for the failed ones

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def message(self) -> str:
        if self.mode == "off":
            return "NEWSLETTER_LLM_SUMMARIES=off: nothing drafted, nothing sent anywhere"
        parts = [f"drafted {self.drafted}", f"{self.failed} failed"]
        if self.cached:
            parts.append(f"{self.cached} already drafted")
        if self.human:
            parts.append(f"{self.human} written by a person")
        if self.gone_out:
            parts.append(f"{self.gone_out} in an issue already sent")
        text = ", ".join(parts) + f" ({self.model}, {self.mode} mode)"
        text += f"; {self.tokens:,} tokens ({self.prompt_tokens:,} prompt, "
        text += f"{self.completion_tokens:,} completion)"
        if self.applied:
            text += f"; {self.applied} in the email unreviewed"
        if self.switched:
            text += f"; {self.switched} earlier drafts follow the {self.mode} mode now"
        if self.retopiced:
            text += f"; {self.retopiced} untagged papers took the model's topics"
        if self.errors:
            text += "; failures: " + "; ".join(self.errors[:5])
            if len(self.errors) > 5:
                text += f" and {len(self.errors) - 5} more"
        return text


def paper_text(paper: Paper) -> PaperText:
    """Everything about a paper that is ever sent: title and abstract."""
    return PaperText(title=normal_text(paper.title), abstract=normal_text(paper.abstract))


@dataclass(frozen=True)
class _Job:
    paper_id: int
    text: PaperText
    untagged: bool  # the keyword tagger found nothing (the paper is only in `general`)


def _offered_topics(session: Session) -> list[OfferedTopic]:
    return [
        OfferedTopic(t.slug, t.name)
        for t in session.exec(select(Topic).order_by(Topic.position)).all()  # type: ignore[arg-type]
        if t.slug != GENERAL_TOPIC
    ]


def _select(
    session: Session,
    settings: Settings,
    report: DraftReport,
    *,
    month: str | None,
    paper_ids: list[int] | None,
    redraft: bool,
) -> list[_Job]:
    query = select(Paper).order_by(Paper.id)  # type: ignore[arg-type]
    if paper_ids is not None:
        query = query.where(Paper.id.in_(paper_ids))  # type: ignore[union-attr]
    elif month is not None:
        query = query.where(Paper.month == month)
    papers = session.exec(query).all()
    ids = [p.id for p in papers if p.id is not None]
    gone_out = set(
        session.exec(
            select(IssuePaper.paper_id)
            .join(Issue, Issue.id == IssuePaper.issue_id)  # type: ignore[arg-type]
            .where(Issue.status.in_([str(s) for s in GONE_OUT]))  # type: ignore[attr-defined]
        ).all()
    )
    drafts = current_drafts(session, ids)
    cached = {
        (d.paper_id, d.abstract_hash)
        for start in range(0, len(ids), 500)
        for d in session.exec(
            select(SummaryDraft).where(
                SummaryDraft.paper_id.in_(ids[start : start + 500]),  # type: ignore[attr-defined]
                SummaryDraft.model == settings.llm_model,
                SummaryDraft.prompt_version == PROMPT_VERSION,
                SummaryDraft.status != DraftStatus.FAILED,
            )
        ).all()
    }
    topics: dict[int, set[str]] = {}
    for start in range(0, len(ids), 500):
        for pid, slug in session.exec(
            select(PaperTopic.paper_id, PaperTopic.topic_slug).where(
                PaperTopic.paper_id.in_(ids[start : start + 500])  # type: ignore[attr-defined]
            )
        ).all():
            topics.setdefault(pid, set()).add(slug)
    jobs = []
    for paper in papers:
        if paper.id in gone_out:
            report.gone_out += 1
            continue
        current = drafts.get(paper.id)  # type: ignore[arg-type]
        auto = current.summary if current and current.status == DraftStatus.AUTO else None
        if has_human_summary(paper, auto) or not paper.abstract.strip():
            report.human += 1
            continue
        if current is not None and _follow_mode(session, settings.llm_summaries, paper, current):
            report.switched += 1
        text = paper_text(paper)
        if not redraft and (paper.id, text.digest) in cached:
            report.cached += 1
            continue
        untagged = topics.get(paper.id, set()) <= {GENERAL_TOPIC}  # type: ignore[arg-type]
        jobs.append(_Job(paper.id, text, untagged))  # type: ignore[arg-type]
    return jobs


def _follow_mode(session: Session, mode: str, paper: Paper, current: SummaryDraft) -> bool:
    """Bring an earlier draft in line with the mode now set: after a switch to `review`, an
    auto draft leaves the email until an editor accepts it; after a switch to `auto`, a
    waiting draft goes in. True when the paper's summary changed."""
    if mode == "review" and current.status == DraftStatus.AUTO:
        current.status = DraftStatus.DRAFTED
        paper.summary = paper.abstract
    elif mode == "auto" and current.status == DraftStatus.DRAFTED:
        current.status = DraftStatus.AUTO
        paper.summary = current.summary
    else:
        return False
    paper.updated_at = utcnow()
    session.add_all([current, paper])
    return True


@dataclass(frozen=True)
class _Stored:
    """What keeping one answer did, counted only once its transaction committed."""

    applied: bool = False  # auto mode: the draft became the paper's summary
    retopiced: bool = False  # the model's topics replaced `general`

    @property
    def changed(self) -> bool:  # the content of an issue listing the paper may differ
        return self.applied or self.retopiced


def _store(session: Session, settings: Settings, job: _Job, answer: Answer) -> _Stored:
    """Keep one answer under its cache key (a new row, or the one a redraft replaces)."""
    key = (
        SummaryDraft.paper_id == job.paper_id,
        SummaryDraft.model == settings.llm_model,
        SummaryDraft.prompt_version == PROMPT_VERSION,
        SummaryDraft.abstract_hash == job.text.digest,
    )
    row = session.exec(select(SummaryDraft).where(*key)).first()
    if row is None:
        row = SummaryDraft(
            paper_id=job.paper_id,
            model=settings.llm_model,
            prompt_version=PROMPT_VERSION,
            abstract_hash=job.text.digest,
        )
    if answer.draft is None:
        if row.id is None or row.status == DraftStatus.FAILED:
            row.status, row.error, row.drafted_at = DraftStatus.FAILED, answer.error, utcnow()
            row.prompt_tokens = answer.prompt_tokens
            row.completion_tokens = answer.completion_tokens
            session.add(row)
        return _Stored()  # a redraft that failed keeps the draft there was
    row.drafted_at = utcnow()
    row.prompt_tokens = answer.prompt_tokens
    row.completion_tokens = answer.completion_tokens
    row.reviewed_by, row.reviewed_at = "", None
    row.summary = answer.draft.summary
    row.topics = list(answer.draft.topics)
    row.relevance = answer.draft.relevance
    row.error = ""
    applied = retopiced = False
    paper = session.get(Paper, job.paper_id)
    assert paper is not None
    if settings.llm_summaries == "auto":
        row.status = DraftStatus.AUTO
        if paper.summary != row.summary:
            paper.summary = row.summary
            paper.updated_at = utcnow()
            session.add(paper)
            applied = True
    else:
        row.status = DraftStatus.DRAFTED
    if job.untagged and row.topics:
        session.execute(delete(PaperTopic).where(PaperTopic.paper_id == job.paper_id))  # type: ignore[arg-type]
        session.add_all(PaperTopic(paper_id=job.paper_id, topic_slug=s) for s in row.topics)
        retopiced = True
    session.add(row)
    return _Stored(applied, retopiced)


def _keep(engine: Engine, settings: Settings, job: _Job, answer: Answer) -> _Stored:
    """Store one answer; a concurrent run (the clock and a CLI run at once) that inserted the
    same cache key first makes this one an update of its row instead."""
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                return _store(session, settings, job, answer)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _count(report: DraftReport, job: _Job, answer: Answer, stored: _Stored) -> None:
    report.prompt_tokens += answer.prompt_tokens
    report.completion_tokens += answer.completion_tokens
    if answer.draft is None:
        report.failed += 1
        report.errors.append(f"{job.text.title[:80]}: {answer.error}")
        return
    report.drafted += 1
    report.applied += stored.applied
    report.retopiced += stored.retopiced


def draft_papers(
    engine: Engine,
    settings: Settings,
    *,
    month: str | None = None,
    paper_ids: list[int] | None = None,
    redraft: bool = False,
    actor: str = audit.SYSTEM,
    on_progress: Callable[[int, int, DraftReport], None] | None = None,
) -> DraftReport:
    """Draft the summaries of `month`'s papers (or of `paper_ids`) that need one.

    `redraft` asks again even where a draft for this abstract, prompt and model exists.
    `on_progress(done, total, report)` follows each answer. Requests run
    `NEWSLETTER_LLM_CONCURRENCY` at a time; each answer is stored as it comes.
    """
    report = DraftReport(mode=settings.llm_summaries, model=settings.llm_model)
    if settings.llm_summaries == "off":
        return report  # nothing is built, so nothing can connect anywhere
    with session_scope(engine) as session:
        jobs = _select(session, settings, report, month=month, paper_ids=paper_ids, redraft=redraft)
        offered = _offered_topics(session)
        if report.switched:  # an issue listing those papers says something else now
            revisions.refresh_drafts(session, actor, f"summaries now in {report.mode} mode")
    if on_progress is not None:
        on_progress(0, len(jobs), report)
    if not jobs:
        return report
    model = LanguageModel(settings, offered)
    pool = ThreadPoolExecutor(max_workers=settings.llm_concurrency)
    changed = False
    try:
        futures = {pool.submit(model.draft, job.text): job for job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            job, answer = futures[future], future.result()
            stored = _keep(engine, settings, job, answer)
            _count(report, job, answer, stored)
            changed |= stored.changed
            if on_progress is not None:
                on_progress(done, len(jobs), report)
    finally:
        # Interrupted (Ctrl-C, a stop): what is queued is never sent, what was stored stays
        # and is recorded, so an issue's revision matches what the papers say.
        pool.shutdown(wait=True, cancel_futures=True)
        model.close()
        with session_scope(engine) as session:
            if changed:
                revisions.refresh_drafts(
                    session, actor, f"summaries drafted by {settings.llm_model}"
                )
            audit.record(session, actor, "papers.draft", month or "", report.message()[:2000])
    return report


def record_run(engine: Engine, month: str, report: DraftReport, started: datetime) -> JobRun:
    """The drafting step's own job run, next to the month's other runs."""
    outcome = "off" if report.mode == "off" else "drafted"
    if report.mode != "off" and report.failed and not report.drafted:
        outcome = "draft-failed"
    run = JobRun(
        job=JOB,
        month=month,
        started_at=started,
        finished_at=datetime.now(UTC),
        outcome=outcome,
        message=report.message(),
    )
    with session_scope(engine) as session:
        session.add(run)
    return run
