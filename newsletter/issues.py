"""Issues: composing the month's draft and reading what an issue lists.

`load_issue_contents` is the one read path that rendering, previews and the archive use;
`compose_issue` is the one write path that decides which papers an issue lists.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, insert
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.email_selection import rank_and_cap
from newsletter.errors import NewsletterError
from newsletter.models import Issue, IssuePaper, IssueStatus, Paper, PaperTopic, Topic, utcnow
from newsletter.months import LATE_WINDOW_MONTHS, month_label, parse_month, shift_month
from newsletter.papers.draft_status import relevance_bonus
from newsletter.papers.tagging import Tagger
from newsletter.topics import GENERAL_TOPIC


@dataclass(frozen=True)
class IssueEntry:
    paper: Paper
    section: str  # topic slug the paper is listed under in this issue
    position: int
    late: bool  # published in an earlier month, arrived after that month's issue
    topics: tuple[str, ...]  # every topic of the paper, in taxonomy order
    in_email: bool = True  # False: past the caps, on the web version only
    score: int = 0  # how strongly it matched its topics' keywords (the ranking)


@dataclass(frozen=True)
class IssueContents:
    issue: Issue
    topics: tuple[Topic, ...]  # topics with at least one entry, in taxonomy order
    entries: tuple[IssueEntry, ...]  # ordered by section (taxonomy order), then position

    @property
    def email_entries(self) -> tuple[IssueEntry, ...]:
        """The entries the email shows (within the caps); the web version shows them all."""
        return tuple(e for e in self.entries if e.in_email)


def find_issue(session: Session, month: str) -> Issue:
    """The month's issue, or an error that says how to make one (the desk, CLI and sends)."""
    issue = session.exec(select(Issue).where(Issue.month == parse_month(month))).first()
    if issue is None:
        raise NewsletterError(
            f"there is no issue for {month}; compose it first (on the desk, or "
            f"`newsletter issue compose {month}`)"
        )
    return issue


def load_issue_contents(session: Session, issue: Issue) -> IssueContents:
    """The issue's papers grouped by section, in the editor's order of sections (else the
    taxonomy's), then by place (three queries, any size)."""
    order = {t.slug: t for t in session.exec(select(Topic).order_by(Topic.position)).all()}
    position_of = revisions.section_rank(session, issue)
    rows = session.exec(
        select(IssuePaper, Paper)
        .join(Paper, Paper.id == IssuePaper.paper_id)
        .where(IssuePaper.issue_id == issue.id)
    ).all()
    paper_ids = [paper.id for _, paper in rows]
    topics_of: dict[int, list[str]] = defaultdict(list)
    if paper_ids:
        for pt in session.exec(select(PaperTopic).where(PaperTopic.paper_id.in_(paper_ids))).all():
            topics_of[pt.paper_id].append(pt.topic_slug)
    entries = sorted(
        (
            IssueEntry(
                paper=paper,
                section=ip.topic_slug,
                position=ip.position,
                late=ip.late,
                in_email=ip.in_email,
                score=ip.score,
                topics=tuple(
                    sorted(topics_of[paper.id], key=lambda s: position_of.get(s, len(order)))
                ),
            )
            for ip, paper in rows
        ),
        key=lambda e: (position_of.get(e.section, len(order)), e.position, e.paper.id or 0),
    )
    sections = []
    for e in entries:
        if e.section not in sections:
            sections.append(e.section)
    return IssueContents(
        issue=issue,
        topics=tuple(order[s] for s in sections if s in order),
        entries=tuple(entries),
    )


def ranked_candidates(contents: IssueContents) -> list[IssueEntry]:
    """Every paper the issue lists, as the editor weighs them: the email's papers first, each
    group strongest match first (what `issue candidates` and approval mode show)."""
    return sorted(
        contents.entries,
        key=lambda e: (not e.in_email, -e.score, e.late, e.paper.normalized_title),
    )


# --- composing -------------------------------------------------------------------------------

# Statuses whose paper list is final: the issue went (or is going) out, or waits for a person.
LOCKED_STATUSES = frozenset(
    {IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT, IssueStatus.MISSED}
)
COMPOSABLE_STATUSES = frozenset({IssueStatus.DRAFT, IssueStatus.APPROVED})
MAX_SUBJECT = 300  # Issue.subject column


class EmptyMonthError(NewsletterError):
    """The month has no paper to send: an explicit outcome, never a silent empty email."""


@dataclass(frozen=True)
class ComposeResult:
    issue: Issue
    created: bool  # a new draft (False: an existing draft was refreshed or left as it was)
    changed: bool  # papers, sections or subject differ from before (the revision was bumped)
    added: int  # papers newly listed by this compose
    removed: int  # papers no longer listed
    late: int  # late arrivals listed (published in an earlier month)
    total: int  # papers listed
    in_email: int = 0  # papers the email shows (the rest: web version only)


@dataclass(frozen=True)
class _Listing:
    paper_id: int
    section: str
    position: int
    late: bool
    in_email: bool = True
    score: int = 0


def _candidates(
    session: Session, issue_id: int | None, month: str, late_window: int
) -> list[tuple[Paper, bool]]:
    """(paper, late) the issue of `month` should list; see `compose_issue` for the rules."""
    first = shift_month(month, -late_window)
    locked_ids = select(IssuePaper.paper_id).join(Issue, Issue.id == IssuePaper.issue_id)
    locked_ids = locked_ids.where(Issue.status.in_(sorted(LOCKED_STATUSES)))
    if issue_id is not None:
        locked_ids = locked_ids.where(Issue.id != issue_id)
    papers = session.exec(
        select(Paper)
        .where(Paper.month <= month, Paper.month >= first)
        .where(Paper.id.not_in(locked_ids))
    ).all()
    return [(paper, paper.month < month) for paper in papers]


def _topics_by_paper(session: Session, paper_ids: list[int]) -> dict[int, list[str]]:
    """Each paper's topics in taxonomy order (`general` if it has none)."""
    order = {t.slug: t.position for t in session.exec(select(Topic)).all()}
    topics: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(paper_ids), 500):
        chunk = paper_ids[start : start + 500]
        for pt in session.exec(select(PaperTopic).where(PaperTopic.paper_id.in_(chunk))).all():
            topics[pt.paper_id].append(pt.topic_slug)
    return {
        pid: sorted(topics[pid], key=lambda s: (order.get(s, len(order)), s)) or [GENERAL_TOPIC]
        for pid in paper_ids
    }


def paper_section(session: Session, paper_id: int) -> str:
    """The section a paper is listed under: its first topic in taxonomy order."""
    return _topics_by_paper(session, [paper_id])[paper_id][0]


def _plan(
    session: Session,
    candidates: list[tuple[Paper, bool]],
    max_papers: int | None = None,
    max_per_topic: int | None = None,
) -> list[_Listing]:
    """Sections in taxonomy order (a paper's section is its first topic); within one, the
    papers the email shows come first, then those past the caps (`email_selection`); each
    group has this month's papers first, then late ones, each by publication date and title."""

    topics = _topics_by_paper(session, [p.id for p, _ in candidates if p.id is not None])
    choices = rank_and_cap(
        Tagger.from_session(session),
        [(p, late, topics[p.id][0], topics[p.id]) for p, late in candidates],  # type: ignore[index]
        max_papers=max_papers,
        max_per_topic=max_per_topic,
        bonus=relevance_bonus(session, list(topics)),
    )
    ordered = sorted(
        candidates,
        key=lambda pl: (
            not choices[pl[0].id].in_email,  # type: ignore[index]
            pl[1],
            pl[0].published,
            pl[0].normalized_title,
            pl[0].id,
        ),
    )
    positions: dict[str, int] = defaultdict(int)
    listings = []
    for paper, late in ordered:
        section = topics[paper.id][0]  # type: ignore[index]
        choice = choices[paper.id]  # type: ignore[index]
        listings.append(
            _Listing(
                paper.id,  # type: ignore[arg-type]
                section,
                positions[section],
                late,
                choice.in_email,
                choice.score,
            )
        )
        positions[section] += 1
    return listings


def compose_issue(
    session: Session,
    month: str,
    title: str,
    *,
    late_window_months: int = LATE_WINDOW_MONTHS,
    max_papers: int | None = None,
    max_per_topic: int | None = None,
    actor: str = audit.SYSTEM,
) -> ComposeResult:
    """Create or refresh the draft issue of `month` (flushed; the caller commits).

    The issue lists every paper published in `month`, plus *late arrivals*: papers published
    in one of the `late_window_months` months before it that no locked issue lists. An issue
    is locked once it is sending, paused, sent or missed; a paper a locked issue lists is
    never listed again, so nobody gets it twice. A draft of another month does not hold its
    papers: the next composed issue takes them as late arrivals, so an abandoned draft never
    swallows papers. The window keeps the first issue from sweeping in years of back catalogue.

    Each paper's section is its first topic in taxonomy order. Recomposing a draft refreshes
    it; when anything changed (papers, sections, order, subject) a new revision is recorded
    (`newsletter.revisions`), so renders cached for the old revision are never reused, and an
    approval or schedule of the old revision is withdrawn. A locked issue is never changed
    (`NewsletterError`). A month with nothing to list raises `EmptyMonthError` and creates
    nothing.

    `max_papers` and `max_per_topic` cap what the email shows (`NEWSLETTER_MAX_PAPERS`,
    `NEWSLETTER_MAX_PAPERS_PER_TOPIC`): every candidate is still listed, ranked, and those
    past the caps appear on the web version only. A draft an editor
    curated on the desk (`Issue.curated`) is left as the editor made it.
    """
    month = parse_month(month)
    subject = " ".join(f"{title} — {month_label(month)}".split())  # never a CR/LF in a header
    if len(subject) > MAX_SUBJECT:
        raise NewsletterError(
            f"the subject {subject[:60]!r}… is {len(subject)} characters; the limit is "
            f"{MAX_SUBJECT}: shorten NEWSLETTER_TITLE"
        )
    issue = session.exec(select(Issue).where(Issue.month == month)).first()
    if issue is not None and issue.status not in COMPOSABLE_STATUSES:
        raise NewsletterError(
            f"issue {month} is {issue.status}; a {issue.status} issue is never changed"
        )
    if issue is not None and issue.curated:
        # An editor shaped this draft on the desk: keep it (the desk can recompose on request).
        listed = session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id)).all()
        return ComposeResult(
            issue, False, False, 0, 0, sum(1 for ip in listed if ip.late), len(listed)
        )
    candidates = _candidates(session, issue.id if issue else None, month, late_window_months)
    if not candidates:
        first = shift_month(month, -late_window_months)
        raise EmptyMonthError(
            f"no papers to send for {month_label(month)}: none published in {month} and no "
            f"unsent late arrival from {first} on; import papers first "
            "(`newsletter papers import FILE`)"
        )
    plan = _plan(session, candidates, max_papers, max_per_topic)
    late = sum(1 for entry in plan if entry.late)
    created = issue is None
    if issue is None:
        issue = Issue(month=month, status=IssueStatus.DRAFT, subject=subject, revision=1)
        session.add(issue)
        session.flush()
        before: dict[int, _Listing] = {}
    else:
        before = {
            ip.paper_id: _Listing(
                ip.paper_id, ip.topic_slug, ip.position, ip.late, ip.in_email, ip.score
            )
            for ip in session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id))
        }
    after = {entry.paper_id: entry for entry in plan}
    changed = created or before != after or issue.subject != subject
    if changed:
        if not created:
            session.execute(delete(IssuePaper).where(IssuePaper.issue_id == issue.id))
        session.execute(
            insert(IssuePaper),
            [
                {
                    "issue_id": issue.id,
                    "paper_id": e.paper_id,
                    "topic_slug": e.section,
                    "position": e.position,
                    "late": e.late,
                    "in_email": e.in_email,
                    "score": e.score,
                }
                for e in plan
            ],
        )
        issue.subject = subject
        issue.composed_at = utcnow()
        session.add(issue)
        # A recompose's reason is what it changed, worked out from the snapshots.
        revisions.record(session, issue, actor, "composed" if created else "", created=created)
    return ComposeResult(
        issue=issue,
        created=created,
        changed=changed,
        added=len(after.keys() - before.keys()),
        removed=len(before.keys() - after.keys()),
        late=late,
        total=len(plan),
        in_email=sum(1 for entry in plan if entry.in_email),
    )
