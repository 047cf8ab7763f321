"""`newsletter papers …` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from newsletter.papers.sources import FORMATS

app = typer.Typer(help="Import and list papers.", no_args_is_help=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., metavar="PATH…", help="Paper files to import."),
    fmt: str = typer.Option(
        "auto", "--format", help=f"One of {', '.join(FORMATS)}; auto looks at name and content."
    ),
) -> None:
    """Import papers; each file is all-or-nothing, and the other files still import."""
    from rich.markup import escape

    from newsletter.cli.common import console, engine, err_console, fail
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
) -> None:
    """A table of papers with their topics, newest first."""
    from rich.markup import escape
    from rich.table import Table

    from newsletter.cli.common import console, engine, fail
    from newsletter.db import session_scope
    from newsletter.errors import NewsletterError
    from newsletter.issues import parse_month
    from newsletter.papers.store import list_papers

    if month is not None:
        try:
            month = parse_month(month)
        except NewsletterError as exc:
            fail(str(exc), code=2)
    with session_scope(engine()) as session:
        rows = list_papers(session, month)
    if not rows:
        console.print(f"No papers{f' for {month}' if month else ''} yet.")
        return
    table = Table(title=f"{_plural(len(rows), 'paper')}{f' of {month}' if month else ''}")
    table.add_column("Published", no_wrap=True)
    table.add_column("Title", overflow="fold")
    table.add_column("Authors", overflow="fold")
    table.add_column("Topics")
    table.add_column("Link", no_wrap=True)
    for paper, topics in rows:
        authors = ", ".join(paper.authors[:3]) + (" …" if len(paper.authors) > 3 else "")
        link = paper.arxiv_id or ("url" if paper.url else "title search")
        table.add_row(
            paper.published.isoformat(),
            escape(paper.title),
            escape(authors),
            ", ".join(topics),
            link,
        )
    console.print(table)


@app.command("fetch-arxiv")
def fetch_arxiv(
    month: str = typer.Option(..., "--month", metavar="YYYY-MM", help="Submission month."),
    categories: list[str] = typer.Option(
        ..., "--category", help="arXiv category, e.g. cs.LG (repeat for several)."
    ),
    max_results: int = typer.Option(2000, "--max", min=1, help="At most this many papers."),
    delay: float = typer.Option(3.0, "--delay", min=0, help="Seconds between API requests."),
    api_url: str = typer.Option("https://export.arxiv.org/api/query", "--api-url", hidden=True),
) -> None:
    """Import a month of arXiv papers in the categories (one request per page, politely)."""
    from rich.markup import escape

    from newsletter.cli.common import console, engine, fail
    from newsletter.errors import NewsletterError
    from newsletter.issues import parse_month
    from newsletter.papers.arxiv import import_arxiv_month

    try:
        parse_month(month)
    except NewsletterError as exc:
        fail(str(exc), code=2)
    report = import_arxiv_month(
        engine(), month, categories, api_url=api_url, max_results=max_results, delay=delay
    )
    if report.error is not None:
        fail(f"{escape(str(report.error))} — nothing imported")
    console.print(
        f"✓ {report.file}: {report.added} added, {report.updated} updated, "
        f"{report.skipped} unchanged",
        markup=False,
    )
    if report.untagged:
        console.print(
            f"  {_plural(len(report.untagged), 'paper')} matched no topic and went to 'general'",
            markup=False,
        )
