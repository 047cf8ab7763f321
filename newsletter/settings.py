"""All configuration in one pydantic-settings class, read from the environment or `.env`.

Bad values fail at start with one line naming the variable (`SettingsError`), so an
operator never has to read a traceback to learn that a setting is wrong.
"""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAPER_SEARCH_URL = "https://arxiv.org/search/?query={query}&searchtype=title&abstracts=show&order=-announced_date_first"


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    var_dir: Path = Path("var")
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("NEWSLETTER_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    mail_backend: Literal["outbox", "smtp", "sendgrid"] = "outbox"
    outbox_dir: Path | None = None
    smtp_url: str = "smtp://localhost:25"
    sendgrid_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("SENDGRID_API_KEY", "sendgrid_api_key"),
    )
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_key: str = ""
    from_: str = Field(
        default="ML Foundations <newsletter@localhost>",
        validation_alias=AliasChoices("NEWSLETTER_FROM", "from_"),
    )
    postal_address: str = ""
    schedule: str = "0 9 1 * *"
    send_cutoff_hours: float = Field(default=24, ge=0)
    batch_size: int = Field(default=1000, ge=1, le=1000)
    send_concurrency: int = Field(default=4, ge=1, le=64)
    send_rate: float = Field(default=0, ge=0)
    admin_token: str = ""
    title: str = "What's new in ML Foundations"
    require_approval: bool = False
    editors: str = ""  # comma-separated addresses that get the test copy in approval mode
    paper_search_url: str = DEFAULT_PAPER_SEARCH_URL
    # issue 13: how long a claimed batch is leased; renewed every third of it while in
    # flight, so only a dead sender's batch outlives it (and is then recorded `unknown`)
    send_lease_seconds: float = Field(default=600, gt=0)

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not (value.startswith("sqlite") or value.startswith("postgresql+")):
            raise ValueError("must be a sqlite:/// or postgres:// URL")
        return value

    @field_validator("base_url", "sendgrid_host")
    @classmethod
    def _http_origin(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL such as https://example.org (got {value!r})")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"must look like smtp://host:25 or smtps://user:pass@host:465 (got {value!r})"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"is not a valid 5-field cron expression ({exc})") from None
        return value

    @field_validator("paper_search_url")
    @classmethod
    def _search_url(cls, value: str) -> str:
        if "{query}" not in value:
            raise ValueError("must contain {query}")
        return value

    @model_validator(mode="after")
    def _defaults_under_var(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'newsletter.db'}"
        if self.outbox_dir is None:
            self.outbox_dir = self.var_dir / "outbox"
        if self.mail_backend == "sendgrid" and not self.sendgrid_api_key:
            raise ValueError("SENDGRID_API_KEY: required when NEWSLETTER_MAIL_BACKEND=sendgrid")
        if not self.secret_key and not self.base_url_is_loopback:
            raise ValueError(
                "NEWSLETTER_SECRET_KEY: required when NEWSLETTER_BASE_URL is not loopback "
                f"({self.base_url}); set a long random value"
            )
        return self

    @property
    def base_url_is_loopback(self) -> bool:
        host = urlsplit(self.base_url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def editor_emails(self) -> list[str]:
        return [e.strip() for e in self.editors.split(",") if e.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret(self) -> str:
        """The signing key: explicit, or generated once into `var/secret_key` for local runs."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        self.secret_key = path.read_text().strip()
        return self.secret_key


def _env_name(field: str) -> str:
    if field.isupper():  # already an environment name (a validation alias)
        return field
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return "NEWSLETTER_" + field.upper()


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one actionable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) for part in err.get("loc", ()) if part]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            name = _env_name(loc[0])
            got = err.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
            if "(got" in msg:
                shown = ""
            raise SettingsError(f"{name}: {msg}{shown}") from None
        raise SettingsError(msg) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build their own with `load_settings(...)`."""
    return load_settings()
