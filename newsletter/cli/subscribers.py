"""`newsletter subscribers …` commands: thin shells over `newsletter.audience`.

Each command imports its services inside the function, only to keep start-up fast:
`newsletter --help` loads none of them (about 1 s), all of them take about 2.5 s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from newsletter.cli.common import audit_cli, console, engine, fail, settings
from newsletter.db import session_scope

app = typer.Typer(
    help="Audience administration: add, import, export, remove, list.", no_args_is_help=True
)


def _split_topics(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


@app.command()
def add(
    email: str = typer.Argument(..., help="The address to add."),
    topics: str = typer.Option("", "--topics", help="Topic slugs separated by commas."),
    name: str = typer.Option("", "--name", help="The person's name (optional)."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="You vouch for their consent: active at once, no email."
    ),
) -> None:
    """Add one subscriber (a confirmation email is sent unless --confirmed)."""
    from newsletter.audience import add_subscriber
    from subscribers.lifecycle import SubscriberError

    try:
        result = add_subscriber(
            engine(), settings(), email, _split_topics(topics), confirmed=confirmed, name=name
        )
    except SubscriberError as exc:
        fail(f"{email!r}: {exc}")
    sub = result.subscriber
    audit_cli(
        "subscriber.add",
        sub.email,
        "--confirmed: consent vouched for by the operator" if confirmed else str(sub.status),
    )
    if confirmed:
        console.print(f"{sub.email}: active (consent vouched for by the operator).")
    elif result.send_confirmation:
        console.print(f"{sub.email}: {sub.status}; confirmation email sent.")
    else:
        console.print(f"{sub.email}: {sub.status}; no email sent ({result.reason}).")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV with columns email, topics (a;b), name."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="You vouch for everyone's consent: no confirmation emails."
    ),
) -> None:
    """Import subscribers from CSV, all or nothing."""
    from newsletter.audience import import_subscribers
    from subscribers.csv_io import CsvImportError

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    try:
        report = import_subscribers(engine(), settings(), text, confirmed=confirmed)
    except CsvImportError as exc:
        fail(f"{file}: {exc}")
    how = "active" if confirmed else f"{report.confirmations_sent} confirmation email(s) sent"
    audit_cli(
        "subscribers.import",
        file.name,
        f"{report.imported} imported"
        + (", --confirmed: consent vouched for by the operator" if confirmed else f", {how}")
        + (
            f", {report.suppressed_skipped} suppressed skipped" if report.suppressed_skipped else ""
        ),
    )
    console.print(f"Imported {report.imported} subscriber(s) from {file}; {how}.")
    if report.suppressed_skipped:
        console.print(
            f"Skipped {report.suppressed_skipped} suppressed address(es): they bounced or "
            "complained before, so nobody mails them (they can still subscribe on the site)."
        )


@app.command()
def export(
    file: Path | None = typer.Argument(None, help="Write here instead of standard output."),
    email: str = typer.Option(
        "", "--email", help="Instead: everything kept about this one person, as JSON."
    ),
) -> None:
    """Export subscribers as CSV (or one person's data as JSON with --email)."""
    from newsletter.personal_data import export_person
    from subscribers import csv_io, lifecycle

    with session_scope(engine()) as session:
        if email:
            try:
                data = export_person(session, email)
            except lifecycle.SubscriberError as exc:
                fail(str(exc))
            out = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
            if file:
                file.write_text(out, encoding="utf-8")
            else:
                sys.stdout.write(out)
            return
        if file is None:
            csv_io.write_export(session, sys.stdout)
            return
        tmp = file.with_name(f".{file.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            count = csv_io.write_export(session, fh)
        tmp.replace(file)
    console.print(f"Exported {count} subscriber(s) to {file}.")


@app.command()
def remove(email: str = typer.Argument(..., help="The address to erase.")) -> None:
    """Erase a person: subscription, topics, consent, deliveries and provider events."""
    from newsletter.audience import suppression_key
    from newsletter.personal_data import erase_person
    from subscribers import lifecycle

    with session_scope(engine()) as session:
        try:
            erased = erase_person(
                session,
                email,
                suppression_key=suppression_key(settings()),
                outbox_dir=settings().outbox_dir,
            )
        except lifecycle.SubscriberError as exc:
            fail(f"{email!r}: {exc}")
    if not erased:
        fail(f"no subscriber with address {email}")
    audit_cli("subscriber.erase", "", "one person erased")  # the address itself is gone
    console.print(f"Erased {email}: every link sent to them stops working.")


@app.command("list")
def list_() -> None:
    """One line per subscriber: address, status, topics."""
    from subscribers import lifecycle

    with session_scope(engine()) as session:
        rows = lifecycle.list_subscribers(session)
    if not rows:
        console.print("No subscribers yet.")
        return
    width = max(len(sub.email) for sub, _ in rows)
    for sub, topics in rows:
        shown = ", ".join(topics) if topics else "(all topics)"
        console.print(f"{sub.email:<{width}}  {sub.status:<12}  {shown}", soft_wrap=True)
    console.print(f"{len(rows)} subscriber(s).")
