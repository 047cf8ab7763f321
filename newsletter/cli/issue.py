"""`newsletter issue …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Compose, preview, send and inspect a monthly issue.", no_args_is_help=True)
