"""`newsletter papers …` commands.

Each command imports its services inside the function, only to keep start-up fast:
`newsletter --help` loads none of them (about 1 s), all of them take about 2.5 s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from newsletter.cli import drafting
from newsletter.cli.common import console, engine, err_console, fail, settings
from newsletter.db import session_scope
from newsletter.errors import NewsletterError
from newsletter.months import parse_month, previous_month
from newsletter.papers.sources import FORMATS

app = typer.Typer(help="Import and list papers.", no_args_is_help=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _after_import(name: str, counts: str, action: str = "papers.import") -> None:
    """Audit an import and record what it rewrote in unsent issues (their approvals go)."""
    from newsletter.audit import cli_actor, record
    from newsletter.db import session_scope
    from newsletter.revisions import refresh_drafts

    with session_scope(engine()) as session:
        record(session, cli_actor(), action, name, counts)
        refresh_drafts(session, cli_actor(), f"papers imported from {name}")


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., metavar="PATH…", help="Paper files to import."),
    fmt: str = typer.Option(
        "auto", "--format", help=f"One of {', '.join(FORMATS)}; auto looks at name and content."
    ),
) -> None:
    """Import papers; each file is all-or-nothing, and the other files still import."""

    from newsletter.papers.store import import_paths

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})", code=2)
    failed = 0
    for report in import_paths(engine(), paths, fmt):
        if report.error is not None:
            failed += 1
            err_console.print(
                f"[red]✗[/red] {escape(str(report.error))} — nothing imported from this file",
                markup=True,
                soft_wrap=True,
            )
            continue
        counts = (
            f"{report.added} added, {report.updated} updated, {report.skipped} unchanged"
            if report.changed
            else f"nothing changed ({_plural(report.skipped, 'paper')} already up to date)"
        )
        console.print(f"✓ {report.file} ({report.format}): {counts}", soft_wrap=True, markup=False)
        for note in report.notes:
            console.print(f"  {note}", soft_wrap=True, markup=False)
        if report.changed:
            _after_import(Path(report.file).name, counts)
        if report.untagged:
            console.print(
                f"  {_plural(len(report.untagged), 'paper')} matched no topic and went to "
                f"'general': " + "; ".join(report.untagged),
                soft_wrap=True,
                markup=False,
            )
    if failed:
        raise typer.Exit(1)


@app.command("list")
def list_(
    month: str | None = typer.Option(None, "--month", metavar="YYYY-MM", help="Only this month."),
    flagged: bool = typer.Option(
        False, "--flagged", help="Only papers in General or whose topic was a close call."
    ),
) -> None:
    """A table of papers with their topics and tagging confidence, newest first.

    "Tagged" gives the confidence and flags papers the tagger put in General or placed by a
    close call (or on thin evidence); topics a person or the source gave say "given".
    """

    from newsletter.papers.store import list_papers
    from newsletter.papers.tagging import flag_for

    if month is not None:
        try:
            month = parse_month(month)
        except NewsletterError as exc:
            fail(str(exc), code=2)
    with session_scope(engine()) as session:
        rows = list_papers(session, month)
    rows = [(p, t, flag_for(t, p.topic_confidence)) for p, t in rows]
    if flagged:
        rows = [row for row in rows if row[2]]
    if not rows:
        what = "flagged papers" if flagged else "papers"
        console.print(f"No {what}{f' for {month}' if month else ''} yet.")
        return
    title = f"{_plural(len(rows), 'paper')}{' flagged' if flagged else ''}"
    table = Table(title=f"{title}{f' of {month}' if month else ''}")
    table.add_column("Published", no_wrap=True)
    table.add_column("Title", overflow="fold")
    table.add_column("Authors", overflow="fold")
    table.add_column("Topics")
    table.add_column("Tagged", overflow="fold")
    table.add_column("Link", no_wrap=True)
    for paper, topics, flag in rows:
        authors = ", ".join(paper.authors[:3]) + (" …" if len(paper.authors) > 3 else "")
        link = paper.arxiv_id or ("url" if paper.url else "title search")
        tagged = "given" if paper.topic_confidence is None else f"{paper.topic_confidence:.2f}"
        tagged = f"{tagged} {flag}".strip() if flag and flag != "general" else flag or tagged
        table.add_row(
            paper.published.isoformat(),
            escape(paper.title),
            escape(authors),
            ", ".join(topics),
            tagged,
            link,
        )
    console.print(table)
    count = sum(1 for row in rows if row[2])
    if count and not flagged:
        console.print(
            f"{_plural(count, 'paper')} flagged (General or a close call): "
            "`newsletter papers list --flagged`",
            markup=False,
        )


@app.command("fetch-arxiv")
def fetch_arxiv(
    month: str = typer.Option(..., "--month", metavar="YYYY-MM", help="Submission month."),
    categories: list[str] = typer.Option(
        ..., "--category", help="arXiv category, e.g. cs.LG (repeat for several)."
    ),
    max_results: int = typer.Option(2000, "--max", min=1, help="At most this many papers."),
    delay: float | None = typer.Option(
        None, "--delay", min=0, help="Seconds between API requests (NEWSLETTER_ARXIV_DELAY, 3)."
    ),
    api_url: str | None = typer.Option(None, "--api-url", hidden=True),
) -> None:
    """Import a month of arXiv papers in the categories (one request per page, politely).

    For the monthly routine put an `arxiv` source in the sources file and use `papers fetch`.
    """

    from newsletter.papers.arxiv import import_arxiv_month

    try:
        parse_month(month)
    except NewsletterError as exc:
        fail(str(exc), code=2)
    report = import_arxiv_month(
        engine(),
        month,
        categories,
        api_url=api_url or settings().arxiv_api_url,
        max_results=max_results,
        delay=settings().arxiv_delay if delay is None else delay,
    )
    if report.error is not None:
        fail(f"{escape(str(report.error))} — nothing imported")
    _after_import(
        f"arXiv {month}", f"{report.added} added, {report.updated} updated", "papers.fetch"
    )
    console.print(
        f"✓ {report.file}: {report.added} added, {report.updated} updated, "
        f"{report.skipped} unchanged",
        markup=False,
    )
    for note in report.notes:
        console.print(f"  {note}", soft_wrap=True, markup=False)
    if report.untagged:
        console.print(
            f"  {_plural(len(report.untagged), 'paper')} matched no topic and went to 'general'",
            markup=False,
        )


@app.command("fetch")
def fetch(
    month: str | None = typer.Option(
        None, "--month", metavar="YYYY-MM", help="Month to fetch (default: the previous month)."
    ),
    sources: Path | None = typer.Option(
        None, "--sources", metavar="FILE", help="Sources file (default NEWSLETTER_SOURCES)."
    ),
) -> None:
    """Fetch every source of the sources file for the month and import what each brings.

    Prints added / updated / unchanged per source, or its error; exit 1 if any failed.
    """

    from newsletter.papers.fetching import FetchOptions, fetch_sources
    from newsletter.papers.sources_file import load_sources_file

    try:
        month = parse_month(month) if month is not None else previous_month(datetime.now(UTC))
    except NewsletterError as exc:
        fail(str(exc), code=2)
    path = sources or settings().sources_path
    if path is None:
        fail("no sources file: set NEWSLETTER_SOURCES or create sources.yaml (see the README)")
    try:
        reports = fetch_sources(
            engine(), load_sources_file(path), month, FetchOptions.from_settings(settings())
        )
    except NewsletterError as exc:
        fail(escape(str(exc)))
    for report in reports:
        if report.ok:
            console.print(f"✓ {report.summary()}", markup=False, soft_wrap=True)
        else:
            err_console.print(
                f"[red]✗[/red] {escape(report.summary())}",
                markup=True,
                soft_wrap=True,
            )
        if report.untagged:
            console.print(
                f"  {_plural(len(report.untagged), 'paper')} matched no topic and went to "
                "'general'",
                markup=False,
            )
    _after_import(f"sources of {month}", f"{len(reports)} source(s) fetched", "papers.fetch")
    if any(not r.ok for r in reports):
        raise typer.Exit(1)


# issue 27: `papers draft` lives in its own module (language-model drafting).
app.command("draft")(drafting.draft)
