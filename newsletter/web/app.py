"""Application factory: wires settings, the database and the route modules together."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from newsletter.db import get_engine, ping
from newsletter.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title=settings.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.engine = get_engine(settings.database_url)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        db_ok = ping(app.state.engine)
        return JSONResponse(
            {"status": "ok" if db_ok else "degraded", "database": "ok" if db_ok else "unreachable"},
            status_code=200 if db_ok else 503,
        )

    @app.get("/", response_class=HTMLResponse)
    def landing() -> str:
        return f"<!doctype html><title>{settings.title}</title><h1>{settings.title}</h1>"

    return app
