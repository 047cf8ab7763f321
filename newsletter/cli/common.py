"""What every command shares: settings, the engine, the console and failing cleanly."""

from __future__ import annotations

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
