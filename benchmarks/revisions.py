"""What a revision costs an edit: the snapshot, its digest and the row, side by side.

A throwaway SQLite database gets a draft of N papers (default 100, abstract-length
summaries). Each row of the table is one editor's note edit in its own transaction, `--edits`
times, timed three ways: the edit with its revision as the desk does it (`set_note`: snapshot
of every paper, SHA-256, one `issue_revision` row), the same edit without the revision (the
pre-issue-21 cost: change the row, bump the counter) and the release check alone
(`revisions.verify`: snapshot and digest, compared with the pinned one).

Usage: .venv/bin/python benchmarks/revisions.py [--papers 100] [--edits 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MONTH = "2026-05"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100)
    parser.add_argument("--edits", type=int, default=50)
    args = parser.parse_args()

    from sqlmodel import Session, select

    from newsletter import revisions
    from newsletter.bootstrap import init_database
    from newsletter.db import make_engine
    from newsletter.desk import editing
    from newsletter.models import Issue, IssueRevision
    from newsletter.testing.sample_issue import build_sample_issue

    tmp = Path(tempfile.mkdtemp(prefix="revisions-bench-"))
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    init_database(engine)
    with Session(engine) as session:
        build_sample_issue(session, MONTH, papers=args.papers, summary_chars=900)

    def with_revision(i: int) -> None:
        with Session(engine) as session:
            editing.set_note(session, MONTH, f"Note number {i}", "bench@example.org")
            session.commit()

    def without_revision(i: int) -> None:
        with Session(engine) as session:
            issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
            issue.editor_note = f"Plain note number {i}"
            issue.revision += 1
            session.add(issue)
            session.commit()

    def release_check(i: int) -> None:
        with Session(engine) as session:
            issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
            assert revisions.verify(session, issue, issue.revision, "bench").ok

    rows = []
    for name, run in (
        ("edit + revision (desk)", with_revision),
        ("edit, no revision (before)", without_revision),
        ("release check (verify)", release_check),
    ):
        times = []
        for i in range(args.edits):
            start = time.perf_counter()
            run(i)
            times.append((time.perf_counter() - start) * 1000)
        rows.append((name, statistics.median(times), max(times)))
        if name.startswith("edit, no"):  # the next check needs a snapshot of the current state
            with_revision(10_000)
    with Session(engine) as session:
        sizes = [len(str(r.snapshot)) for r in session.exec(select(IssueRevision)).all()]
    print(f"{args.papers} papers, {args.edits} edits each; snapshot ≈ {max(sizes) / 1000:.0f} KB")
    print(f"{'':28} {'median':>10} {'max':>10}")
    for name, median, worst in rows:
        print(f"{name:28} {median:>8.1f} ms {worst:>8.1f} ms")


if __name__ == "__main__":
    main()
