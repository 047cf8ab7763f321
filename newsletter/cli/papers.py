"""`newsletter papers …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Import and list papers.", no_args_is_help=True)
