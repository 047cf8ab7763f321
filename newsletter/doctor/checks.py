"""A doctor's finding: ok, warn or fail, and what to change; every check module returns these."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    fix: str = ""  # what to do, when not ok

    def line(self) -> str:
        fix = f" — fix: {self.fix}" if self.fix and self.level != Level.OK else ""
        return f"{self.level.value:<4}  {self.name}: {self.message}{fix}"


def ok(name: str, message: str) -> Check:
    return Check(name, Level.OK, message)


def warn(name: str, message: str, fix: str) -> Check:
    return Check(name, Level.WARN, message, fix)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, Level.FAIL, message, fix)
