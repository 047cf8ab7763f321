"""`newsletter doctor` and the pre-flight `issue send` runs: thin over `newsletter.doctor`.

Each command imports its services inside the function, only to keep start-up fast:
`newsletter --help` loads none of them (about 1 s), all of them take about 2.5 s.
"""

from __future__ import annotations

import typer

from newsletter.cli.common import console, err_console, settings


def doctor() -> None:
    """Pre-flight of the configuration and the From domain (SPF, DKIM, DMARC, MX, base URL,
    keys, List-Unsubscribe, provider credentials); exit 1 on any fail."""
    from newsletter.doctor import Level, failures, run_doctor

    checks = run_doctor(settings())
    colour = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "red"}
    for check in checks:
        line = check.line()
        console.print(
            f"[{colour[check.level]}]{line[:4]}[/]{line[4:]}", soft_wrap=True, markup=True
        )
    bad = failures(checks)
    if bad:
        err_console.print(f"{len(bad)} check(s) failed.", markup=False)
        raise typer.Exit(1)


def refuse_on_failed_preflight(month: str) -> None:
    """What `issue send` runs first: the fast checks; a fail stops the send (exit 1)."""
    from newsletter.doctor import failures, preflight_checks

    bad = failures(preflight_checks(settings()))
    for check in bad:
        err_console.print(
            f"[red]error:[/red] {check.line().removeprefix('fail  ')}", soft_wrap=True
        )
    if bad:
        err_console.print(
            f"Not sending {month}: fix the above (`newsletter doctor` checks everything), "
            "or send anyway with --force.",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
