"""`newsletter papers draft`: the month's plain-language summaries from the configured
language model, by hand (the monthly job does the same after fetching)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from newsletter.cli.common import console, engine, err_console, fail, settings
from newsletter.errors import NewsletterError
from newsletter.months import parse_month, previous_month


def draft(
    month: str | None = typer.Option(
        None, "--month", metavar="YYYY-MM", help="Month to draft (default: the previous month)."
    ),
    redraft: bool = typer.Option(
        False, "--redraft", help="Ask again even where this model already drafted the abstract."
    ),
) -> None:
    """Draft plain-language summaries and topics with NEWSLETTER_LLM_MODEL.

    Only papers without a human-written summary are sent (title and abstract, nothing else).
    Prints drafted / failed / already drafted and the tokens used; exit 1 if every one failed.
    """
    from newsletter.audit import cli_actor
    from newsletter.papers.drafting import DraftReport, draft_papers, record_run

    try:
        month = parse_month(month) if month is not None else previous_month(datetime.now(UTC))
    except NewsletterError as exc:
        fail(str(exc), code=2)
    config = settings()
    if config.llm_summaries == "off":
        fail(
            "NEWSLETTER_LLM_SUMMARIES is off, so nothing is drafted or sent anywhere: set it to "
            "review (editors accept each draft) or auto, with NEWSLETTER_LLM_BASE_URL and "
            "NEWSLETTER_LLM_MODEL (see the README)"
        )
    started = datetime.now(UTC)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("drafted {task.fields[drafted]} · failed {task.fields[failed]} ·"),
        TextColumn("{task.fields[tokens]} tokens"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(
            f"Drafting {month} with {config.llm_model}", total=None, drafted=0, failed=0, tokens=0
        )

        def progress(done: int, total: int, report: DraftReport) -> None:
            bar.update(
                task,
                total=total,
                completed=done,
                drafted=report.drafted,
                failed=report.failed,
                tokens=f"{report.tokens:,}",
            )

        report = draft_papers(
            engine(), config, month=month, redraft=redraft, actor=cli_actor(), on_progress=progress
        )
    record_run(engine(), month, report, started)
    console.print(report.message(), markup=False, soft_wrap=True)
    if report.failed and not report.drafted:
        raise typer.Exit(1)
