"""Keep requirements.lock honest about pyproject.toml.

The lock records a digest of the dependency lists it was compiled from, so a `make` after
someone edits `pyproject.toml`'s dependencies without running `make lock` stops with a clear
message instead of silently installing an old set.

    python scripts/lockfile.py stamp requirements.lock   # after compiling (make lock)
    python scripts/lockfile.py check requirements.lock   # before installing (make install)
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

MARK = "# pyproject-dependencies-sha256: "


def dependencies_digest(pyproject: Path) -> str:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(MARK):
            return line[len(MARK) :].strip()
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"stamp", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    lock = Path(argv[2])
    digest = dependencies_digest(Path("pyproject.toml"))
    if argv[1] == "stamp":
        lines = [
            ln for ln in lock.read_text(encoding="utf-8").splitlines() if not ln.startswith(MARK)
        ]
        header = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
        lines.insert(header, MARK + digest)
        lock.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return 0
    if not lock.exists():
        print(f"error: {lock} is missing: run `make lock`", file=sys.stderr)
        return 1
    if recorded_digest(lock) != digest:
        print(
            f"error: {lock} was compiled from other dependencies than pyproject.toml lists: "
            "run `make lock` and commit both files",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
