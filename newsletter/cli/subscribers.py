"""`newsletter subscribers …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Audience administration: add, import, export, remove, list.", no_args_is_help=True
)
