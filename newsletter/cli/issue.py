"""`newsletter issue …` commands.

Each command imports its services inside the function, only to keep start-up fast:
`newsletter --help` loads none of them (about 1 s), all of them take about 2.5 s.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from newsletter.cli.common import confirm, console, engine, err_console, fail, settings
from newsletter.db import session_scope
from newsletter.errors import NewsletterError
from newsletter.months import MONTH_RE, parse_month

app = typer.Typer(help="Compose, preview, send and inspect a monthly issue.", no_args_is_help=True)


YES = typer.Option(False, "--yes", "-y", help="Do not ask (scripts): the summary still prints.")


def _summary(month: str):  # type: ignore[no-untyped-def]
    from newsletter.approval import release_summary

    with session_scope(engine()) as session:
        return release_summary(session, settings(), month)


@app.command()
def approve(month: str = typer.Argument(..., metavar="YYYY-MM"), yes: bool = YES) -> None:
    """Approve the current revision (approval mode) and start sending it.

    Prints subject, revision, recipients and the last test copy, then asks [y/N]."""
    from newsletter.audit import cli_actor
    from newsletter.release import approve_issue

    _check_month(month)
    summary = _summary(month)
    if not summary.may_approve:
        fail(
            f"revision {summary.revision} of {month} was never test-sent: send a test copy first "
            f"(`newsletter issue send {month} --test YOU@EXAMPLE.ORG`; "
            "NEWSLETTER_REQUIRE_TEST_COPY=true)"
        )
    confirm(
        summary.lines(),
        f"Approve revision {summary.revision} and send it to {summary.recipients:,} people",
        yes=yes,
    )
    outcome = approve_issue(engine(), settings(), month, summary.revision, cli_actor())
    console.print(f"{outcome.month}: {outcome.outcome}: {outcome.message}", markup=False)


@app.command()
def preview(
    month: str = typer.Argument(..., metavar="YYYY-MM"),
    topics: str = typer.Option("", "--topics", help="Topic slugs, comma-separated (none: all)."),
    text: bool = typer.Option(False, "--text", help="The plain-text part instead of the HTML."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to FILE."),
    open_: bool = typer.Option(False, "--open", help="Open it in a browser."),
) -> None:
    """Show the email exactly as a subscriber with those topics receives it (sample links)."""
    from newsletter.rendering.preview import parse_topics_option, render_preview, size_line

    _check_month(month)
    try:
        with session_scope(engine()) as session:
            result = render_preview(session, month, parse_topics_option(topics), settings())
    except NewsletterError as exc:
        fail(str(exc))
    body = result.email.text if text else result.email.html
    size = size_line(result.variant, result.email, settings())
    if open_ and output is None:
        suffix = f"-{result.variant.replace(',', '+')}" if result.variant else ""
        output = settings().var_dir / "previews" / f"{month}{suffix}.{'txt' if text else 'html'}"
    if output is None:
        typer.echo(body, nl=False)
        err_console.print(size, markup=False, soft_wrap=True)  # stdout is the email itself
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(body, encoding="utf-8")
    console.print(f"Wrote {output} (subject: {result.email.subject})", markup=False, soft_wrap=True)
    console.print(size, markup=False, soft_wrap=True)
    if open_:
        import webbrowser

        webbrowser.open(output.resolve().as_uri())


@app.command()
def compose(
    month: str = typer.Argument(..., metavar="YYYY-MM"),
    max_papers: int | None = typer.Option(
        None, "--max-papers", min=1, help="Papers in the email (default NEWSLETTER_MAX_PAPERS)."
    ),
    max_per_topic: int | None = typer.Option(
        None,
        "--max-per-topic",
        min=1,
        help="Papers per topic in the email (default NEWSLETTER_MAX_PAPERS_PER_TOPIC).",
    ),
) -> None:
    """Create or refresh the month's draft issue (a sent issue is never changed).

    Past the caps, papers appear on the issue's web version only; `issue candidates` lists
    them all, ranked."""
    from newsletter.audit import cli_actor, record
    from newsletter.issues import compose_issue
    from newsletter.rendering.preview import variant_sizes

    try:
        parse_month(month)
    except NewsletterError as exc:
        fail(str(exc), code=2)
    try:
        with session_scope(engine()) as session:
            result = compose_issue(
                session,
                month,
                settings().title,
                max_papers=max_papers or settings().max_papers,
                max_per_topic=max_per_topic or settings().max_papers_per_topic,
                actor=cli_actor(),
            )
            record(session, cli_actor(), "issue.compose", month, f"{result.total} papers")
        with session_scope(engine()) as session:
            sizes = variant_sizes(session, month, settings())
    except NewsletterError as exc:
        fail(str(exc))
    issue = result.issue
    late = f", {result.late} late arrival{'s' if result.late != 1 else ''}" if result.late else ""
    listing = f"{result.total} paper{'s' if result.total != 1 else ''}{late}"
    if result.in_email < result.total:
        listing += (
            f" ({result.in_email} in the email, {result.total - result.in_email} on the web "
            f"version only; `newsletter issue candidates {month}` lists them)"
        )
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
    console.print("Email size per variant (Gmail clips past 102 KB):", markup=False)
    for line in sizes:
        console.print(f"  {line}", markup=False, soft_wrap=True)


@app.command()
def candidates(month: str = typer.Argument(..., metavar="YYYY-MM")) -> None:
    """Every paper the month's issue lists, ranked, and which ones the email shows."""
    from sqlmodel import select

    from newsletter.issues import load_issue_contents, ranked_candidates
    from newsletter.models import Issue

    _check_month(month)
    with session_scope(engine()) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).first()
        if issue is None:
            fail(f"no issue for {month}: run `newsletter issue compose {month}` first")
        entries = ranked_candidates(load_issue_contents(session, issue))
        shown = sum(1 for e in entries if e.in_email)
        table = Table(
            title=f"Issue {month} ({issue.status}): {len(entries)} candidates, {shown} in the email"
        )
        table.add_column("#", justify="right")
        table.add_column("Email")
        table.add_column("Score", justify="right")
        table.add_column("Section")
        table.add_column("Title", overflow="fold")
        for number, entry in enumerate(entries, start=1):
            late = " (late)" if entry.late else ""
            table.add_row(
                str(number),
                "yes" if entry.in_email else "web only",
                str(entry.score),
                entry.section,
                escape(entry.paper.title) + late,
            )
    console.print(table)
    if shown < len(entries):
        console.print(
            "Change the caps with `newsletter issue compose "
            f"{month} --max-papers N --max-per-topic N`.",
            markup=False,
        )


def _check_month(month: str) -> None:
    if not MONTH_RE.match(month):
        fail(f"month must look like 2026-05 (got {month!r})", code=2)


@app.command()
def send(
    month: str = typer.Argument(..., metavar="YYYY-MM"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and render; send nothing."),
    test: str | None = typer.Option(
        None,
        "--test",
        metavar="EMAIL[,EMAIL…]",
        help="Send a copy marked [TEST rN] to these addresses only (up to 5).",
    ),
    topics: str | None = typer.Option(
        None, "--topics", metavar="a,b", help="With --test: the variant of these topic slugs."
    ),
    resend_unknown: bool = typer.Option(
        False, "--resend-unknown", help="Send again to deliveries whose outcome is unknown."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Send even when a pre-flight check (`newsletter doctor`) fails, or, in approval "
        "mode, a revision nobody approved (audited).",
    ),
    yes: bool = YES,
) -> None:
    """Plan and deliver the issue; run it again to finish an interrupted send (nobody twice).

    Prints subject, revision, recipients and the last test copy, then asks [y/N]."""
    from newsletter.audit import cli_actor
    from newsletter.cli.doctor import refuse_on_failed_preflight
    from newsletter.cli.sending import run_send
    from newsletter.rendering.preview import parse_topics_option

    _check_month(month)
    if not (dry_run or test is not None):
        refuse_on_failed_preflight(month, force=force)
    if test is not None:
        from newsletter.approval import send_test

        sent = send_test(
            engine(), settings(), month, test, cli_actor(), topics=parse_topics_option(topics)
        )
        console.print(f"Test copy of {month} sent to {', '.join(sent)}.", markup=False)
        return
    revision = None
    if not dry_run:
        summary = _summary(month)
        if summary.status in ("draft", "approved"):
            revision = summary.revision
            if settings().require_approval and summary.approved_revision != revision and not force:
                fail(
                    f"revision {revision} of {month} is not approved (approval mode): "
                    f"`newsletter issue approve {month}`, or --force to send it unapproved"
                )
            question = f"Send revision {revision} to {summary.recipients:,} people"
        else:
            question = f"Continue the {summary.status} send of {month}"
        confirm(summary.lines(), question, yes=yes)
    code = run_send(
        engine(),
        settings(),
        month,
        dry_run=dry_run,
        resend_unknown=resend_unknown,
        revision=revision,
        force=force,
        actor=cli_actor(),
    )
    if code:
        raise typer.Exit(code)


@app.command()
def status(month: str = typer.Argument(..., metavar="YYYY-MM")) -> None:
    """Counts per delivery status, and the failures and unknown outcomes with reasons."""
    from newsletter.cli.sending import print_status

    _check_month(month)
    print_status(engine(), month)
