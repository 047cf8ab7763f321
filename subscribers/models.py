"""Subscriber tables. Topic slugs are plain strings so this package needs no newsletter model."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, ForeignKey, Integer
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_public_id() -> str:
    """The random id links carry instead of the row id (which would reveal the list size)."""
    return secrets.token_urlsafe(12)


def _ts(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), nullable=nullable)


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # asked to subscribe, has not confirmed yet
    ACTIVE = "active"
    PAUSED = "paused"  # keeps preferences, receives nothing until resumed
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED = "suppressed"  # bounced or complained: never mailed again automatically


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    # Also a column default, so bulk (Core) inserts get one too.
    public_id: str = Field(
        default_factory=new_public_id,
        max_length=32,
        unique=True,
        index=True,
        sa_column_kwargs={"default": new_public_id},
    )
    name: str = Field(default="", max_length=200)
    status: str = Field(default=SubscriberStatus.PENDING, max_length=20, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    confirmed_at: datetime | None = Field(default=None, sa_column=_ts())
    unsubscribed_at: datetime | None = Field(default=None, sa_column=_ts())
    suppressed_reason: str = Field(default="", max_length=200)
    # Bumped to invalidate every token issued before (erase, address change, compromise).
    token_version: int = Field(default=1)
    confirmations_sent_on: str = Field(default="", max_length=10)  # YYYY-MM-DD, UTC
    confirmations_sent_count: int = Field(default=0)


class SubscriberTopic(SQLModel, table=True):
    __tablename__ = "subscriber_topic"

    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True)
    )
    topic_slug: str = Field(primary_key=True, max_length=64)


class ConsentRecord(SQLModel, table=True):
    """What a person agreed to, when, and from where (GDPR Art. 7(1) proof of consent)."""

    __tablename__ = "consent_record"
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    action: str = Field(max_length=32)  # subscribe, confirm, import, preferences, unsubscribe
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    client_address: str = Field(default="", max_length=64)
    consent_text_version: str = Field(default="", max_length=32)
    source: str = Field(default="", max_length=64)  # web, cli, import, one-click, webhook


class SuppressedAddress(SQLModel, table=True):
    """A keyed hash of an erased address that had bounced or complained: erasing the person
    leaves no address behind, yet an import or an operator cannot put it back on the list."""

    __tablename__ = "suppressed_address"
    address_hash: str = Field(primary_key=True, max_length=64)
    reason: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
