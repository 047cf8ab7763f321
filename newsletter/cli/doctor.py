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
    from newsletter.doctor.preflight import forget

    checks = run_doctor(settings())
    forget(settings())  # the next send asks DNS afresh, e.g. after fixing a record
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


def refuse_on_failed_preflight(month: str, *, force: bool = False) -> None:
    """What `issue send` runs first: the fast checks, then the domain's DNS (SPF, DMARC,
    From domain; cached 24 h). A fail stops the send (exit 1) and, for DNS, mails the
    editors; `--force` sends anyway and the override is audited. A DNS server that does not
    answer is a warning."""
    from newsletter import audit
    from newsletter.cli.common import engine
    from newsletter.db import session_scope
    from newsletter.doctor import failures, preflight_checks
    from newsletter.doctor.preflight import domain_preflight
    from newsletter.transports import notify_editors

    current = settings()
    bad = [] if force else failures(preflight_checks(current))
    dns = domain_preflight(current)
    for check in dns.warnings:
        err_console.print(
            f"[yellow]warning:[/yellow] {check.line().removeprefix('warn  ')}", soft_wrap=True
        )
    lines = [c.line().removeprefix("fail  ") for c in dns.failures]
    if dns.failures and force:
        with session_scope(engine()) as session:
            audit.record(session, audit.cli_actor(), "issue.send_forced", month, "; ".join(lines))
        for line in lines:
            err_console.print(f"[yellow]forced past:[/yellow] {line}", soft_wrap=True)
    elif dns.failures:
        bad += dns.failures
        notify_editors(
            current,
            f"Issue {month} not sent: the sending domain fails its checks",
            f"`newsletter issue send {month}` refused to send:\n\n"
            + "\n".join(lines)
            + "\n\nFix the records (`newsletter doctor` shows everything), or send anyway "
            "with `newsletter issue send --force` (audited).",
        )
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
