"""All configuration in one pydantic-settings class, read from the environment or `.env`.

Bad values fail at start with one line naming the variable (`SettingsError`), so an
operator never has to read a traceback to learn that a setting is wrong.

Why this module is long: it is the one place every setting is declared, defaulted and
validated (the README's configuration table mirrors it); splitting the class would scatter
the contract an operator reads.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# newsletter.verp.MAX_BOUNCE_LOCAL: the signed tokens after it fill the 64-character local part
MAX_BOUNCE_LOCAL = 20
MIN_SECRET_LENGTH = 32  # secret key and admin token, when the site is public
DEFAULT_PAPER_SEARCH_URL = "https://arxiv.org/search/?query={query}&searchtype=title&abstracts=show&order=-announced_date_first"


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable."""


def is_loopback_host(host: str) -> bool:
    """True for a name only this machine reaches (`0.0.0.0` is every interface, not this one)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    # issue 21: an approval or schedule needs a test copy of the very revision approved.
    require_test_copy: bool = True
    paper_search_url: str = DEFAULT_PAPER_SEARCH_URL
    # issue 11: what inboxes see. Replies go to the editor; From is checked at start.
    reply_to: str = ""
    # HTML budget per variant, counted as sent (rendering.wire_size.html_size): 100 KB on
    # the wire stays under Gmail's ~102 KB clipping, so more is refused.
    max_email_kb: int = Field(default=90, ge=20, le=100)

    # Issue 15: sources fetched by the monthly job, and caps that keep the email readable.
    sources: Path | None = None  # NEWSLETTER_SOURCES; default ./sources.yaml when it exists
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_delay: float = Field(default=3.0, ge=0)  # seconds between arXiv API requests
    max_feed_bytes: int = Field(default=20 * 1024 * 1024, ge=1)  # largest feed download
    max_papers: int | None = Field(default=None, ge=1)  # papers in the email, per issue
    max_papers_per_topic: int | None = Field(default=None, ge=1)  # per topic section
    send_on_source_failure: bool = False
    source_retries: int = Field(default=4, ge=0)  # retries of a failing source per job run
    source_retry_delay: float = Field(default=60, ge=0)  # first back-off, doubling each retry

    # Issue 16: sender reputation (`newsletter doctor`) and SMTP bounces (VERP + IMAP mailbox).
    dkim_selectors: str = ""  # comma-separated selectors published under _domainkey
    dns_server: str = ""  # host or host:port doctor asks instead of the system resolver
    bounce_address: str = ""  # envelope sender; VERP puts the recipient in it
    bounce_imap_url: str = ""  # imap(s)://user:password@host:port/MAILBOX that bounces reach

    # Issue 12 (hardening): request body cap, Host check, proxies, webhook freshness.
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    allowed_hosts: str = ""  # comma-separated extra Host names besides the base URL's
    trusted_proxies: str = "127.0.0.1,::1"  # uvicorn forwarded_allow_ips; "*" trusts all
    webhook_max_age_seconds: int = Field(default=600, ge=1)

    # -- issue 14: the editor's desk (/admin) --
    session_hours: float = Field(default=12, gt=0, le=24 * 30)  # a desk session's lifetime
    sign_in_link_minutes: float = Field(default=15, gt=0, le=24 * 60)  # mailed link validity
    # how often the clock looks for an issue an editor scheduled (or approved) that is due
    schedule_check_seconds: float = Field(default=30, ge=1)

    # issue 13: how long a claimed batch is leased; renewed every third of it while in
    # flight, so only a dead sender's batch outlives it (and is then recorded `unknown`)
    send_lease_seconds: float = Field(default=600, gt=0)

    # Issue 27: plain-language summaries drafted by an OpenAI-compatible endpoint. `off`
    # (the default) never opens a connection; `review` waits for an editor's Accept; `auto`
    # mails drafts as written. Only a paper's title and abstract are ever sent.
    llm_summaries: Literal["off", "review", "auto"] = "off"
    llm_base_url: str = ""  # e.g. http://localhost:11434/v1 (Ollama) or a hosted API's /v1
    llm_model: str = ""
    llm_api_key: str = ""  # optional for local servers
    llm_concurrency: int = Field(default=4, ge=1, le=64)  # requests in flight
    llm_timeout: float = Field(default=60, gt=0)  # seconds per request
    llm_retries: int = Field(default=3, ge=0, le=10)  # after a 429, 5xx, timeout or refusal
    llm_retry_delay: float = Field(default=2.0, ge=0)  # first back-off, doubling each retry

    @field_validator("from_", "reply_to")
    @classmethod
    def _mailbox(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value and info.field_name == "reply_to":
            return value
        _, address = parseaddr(value)
        local, _, domain = address.rpartition("@")
        bad_domain = any(c.isspace() or c in "<>@" for c in domain)
        if "\r" in value or "\n" in value or not local or not domain or bad_domain:
            raise ValueError(
                f"must be an address like 'ML Foundations <news@example.org>' (got {value!r})"
            )
        return value

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

    @field_validator("base_url", "sendgrid_host", "arxiv_api_url")
    @classmethod
    def _http_origin(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL such as https://example.org (got {value!r})")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _llm_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(
                "must be the API's http(s) base URL, such as http://localhost:11434/v1 "
                f"(got {value!r})"
            )
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
        # Imported here only to keep start-up fast: every process reads settings, only the
        # clock runs APScheduler.
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"is not a valid 5-field cron expression ({exc})") from None
        return value

    @field_validator("dns_server")
    @classmethod
    def _dns_server(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"must be an IP address, optionally :port (got {value!r})") from None
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"has a bad port (got {value!r})")
        return value

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str) -> str:
        value = value.strip()
        local, at, domain = value.rpartition("@")
        if value and (not at or not local or "." not in domain or "+" in local or "<" in value):
            raise ValueError(
                "must be a bare address without '+', such as bounces@news.example.org "
                f"(got {value!r})"
            )
        if len(local) > MAX_BOUNCE_LOCAL:
            raise ValueError(
                f"its local part must be at most {MAX_BOUNCE_LOCAL} characters, so the signed "
                f"VERP and unsubscribe tokens fit in 64 (got {local!r})"
            )
        return value

    @field_validator("bounce_imap_url")
    @classmethod
    def _imap_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("imap", "imaps") or not parts.hostname):
            raise ValueError(
                "must look like imaps://user:password@imap.example.org/INBOX (got a "
                f"{parts.scheme or 'schemeless'} URL)"
            )
        return value

    @field_validator("sources", "max_papers", "max_papers_per_topic", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`NEWSLETTER_MAX_PAPERS=` (empty) means no cap, not a bad number."""
        return None if isinstance(value, str) and not value.strip() else value

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
        if self.llm_summaries != "off":
            for name, value in (("BASE_URL", self.llm_base_url), ("MODEL", self.llm_model)):
                if not value.strip():
                    raise ValueError(
                        f"NEWSLETTER_LLM_{name}: required when NEWSLETTER_LLM_SUMMARIES="
                        f"{self.llm_summaries} (or set NEWSLETTER_LLM_SUMMARIES=off)"
                    )
        if not self.base_url_is_loopback:
            for name, value in (("SECRET_KEY", self.secret_key), ("ADMIN_TOKEN", self.admin_token)):
                if value and len(value) < MIN_SECRET_LENGTH:
                    raise ValueError(
                        f"NEWSLETTER_{name}: needs at least {MIN_SECRET_LENGTH} characters with a "
                        f"public NEWSLETTER_BASE_URL ({self.base_url})"
                    )
        return self

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """Host header names this site answers to: the base URL's host, loopback names when
        the base URL is loopback, and NEWSLETTER_ALLOWED_HOSTS."""
        names = {(urlsplit(self.base_url).hostname or "").lower()}
        if self.base_url_is_loopback:
            names |= {"localhost", "127.0.0.1", "::1"}
        names |= {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        return frozenset(names - {""})

    @property
    def base_url_is_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.base_url).hostname or "")

    @property
    def from_domain(self) -> str:
        return parseaddr(self.from_)[1].rpartition("@")[2].lower()

    @property
    def from_domain_is_local(self) -> bool:
        """localhost, *.local(host|domain), a bare IP or a dotless name: no one else's
        inbox trusts it, and it names no one to write back to."""
        domain = self.from_domain.strip("[]")
        try:
            ipaddress.ip_address(domain)
            return True
        except ValueError:
            pass
        local_suffixes = (".local", ".localhost", ".localdomain", ".internal")
        return domain == "localhost" or "." not in domain or domain.endswith(local_suffixes)

    @property
    def dkim_selector_list(self) -> list[str]:
        return [s.strip() for s in self.dkim_selectors.split(",") if s.strip()]

    @property
    def editor_emails(self) -> list[str]:
        return [e.strip() for e in self.editors.split(",") if e.strip()]

    @property
    def sources_path(self) -> Path | None:
        """The sources file: NEWSLETTER_SOURCES, else `sources.yaml` here when it exists."""
        if self.sources is not None:
            return self.sources
        default = Path("sources.yaml")
        return default if default.is_file() else None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret(self) -> str:
        """The signing key: explicit, or generated once into `var/secret_key` for local runs."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Created 0600 and exclusively: never readable by others, even for a moment, and
            # two processes starting at once cannot both write a different key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        for _ in range(50):  # a concurrent creator may not have written it yet
            key = path.read_text().strip()
            if key:
                break
            time.sleep(0.02)
        self.secret_key = key
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
