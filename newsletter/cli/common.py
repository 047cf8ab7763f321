"""What every command shares: settings, the engine, the console and failing cleanly."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from newsletter.db import get_engine
from newsletter.settings import Settings, get_settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def settings() -> Settings:
    return get_settings()


def engine() -> Engine:
    return get_engine(get_settings().database_url)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an expected failure as one line and exit (1 failure, 2 bad usage)."""
    err_console.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def confirm(lines: list[str], question: str, *, yes: bool) -> None:
    """Print what is about to happen and ask `[y/N]` on a terminal; scripts pass `--yes`.

    Without a terminal (cron, a pipe) and without `--yes` it refuses: a send nobody was
    asked about is exactly the one that goes wrong.
    """
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question}: not confirmed (no terminal to ask on); pass --yes to go ahead")
    if not typer.confirm(f"{question}?", default=False):
        fail("not confirmed; nothing was done")


def audit_cli(action: str, target: str = "", detail: str = "") -> None:
    """An audit entry for a CLI action that changed state, named `cli:USER@HOST`."""
    from newsletter.audit import cli_actor, record
    from newsletter.db import session_scope

    with session_scope(engine()) as session:
        record(session, cli_actor(), action, target, detail)
