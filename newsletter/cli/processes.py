"""The long-running processes of the Procfile: web, clock and worker."""

from __future__ import annotations

import typer

from newsletter.cli.common import settings


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, envvar="PORT", help="Port to listen on ($PORT honoured)."),
) -> None:
    """Run the web app (uvicorn): subscribe pages, archive, previews, webhooks."""
    import uvicorn

    from newsletter.web.app import create_app

    app = create_app(settings())
    typer.echo(
        f"Serving {settings().title} at http://{host}:{port}/ (public URL {settings().base_url})"
    )
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)
