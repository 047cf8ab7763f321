"""`newsletter issue …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Compose, preview, send and inspect a monthly issue.", no_args_is_help=True)


@app.command()
def compose(month: str = typer.Argument(..., metavar="YYYY-MM")) -> None:
    """Create or refresh the month's draft issue (a sent issue is never changed)."""
    from newsletter.cli.common import console, engine, fail, settings
    from newsletter.db import session_scope
    from newsletter.errors import NewsletterError
    from newsletter.issues import compose_issue, parse_month

    try:
        parse_month(month)
    except NewsletterError as exc:
        fail(str(exc), code=2)
    try:
        with session_scope(engine()) as session:
            result = compose_issue(session, month, settings().title)
    except NewsletterError as exc:
        fail(str(exc))
    issue = result.issue
    late = f", {result.late} late arrival{'s' if result.late != 1 else ''}" if result.late else ""
    listing = f"{result.total} paper{'s' if result.total != 1 else ''}{late}"
    if result.created:
        what = f"Composed draft issue {month}: {listing}."
    elif result.changed:
        what = (
            f"Refreshed draft issue {month} (revision {issue.revision}): {listing}; "
            f"{result.added} added, {result.removed} removed."
        )
    else:
        what = (
            f"Issue {month} is up to date ({issue.status}, revision {issue.revision}): {listing}."
        )
    console.print(what, markup=False)
    console.print(f"Subject: {issue.subject}", markup=False)
