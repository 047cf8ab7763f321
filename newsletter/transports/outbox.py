"""The default transport: one `.eml` file per recipient, so the service runs with no account.

Files are written atomically (temp file, then rename) and named by delivery id, so a resent
batch overwrites rather than duplicates, and a reader never sees half a message. Mails
outside a send (no delivery id) are named `mail-<UTC time>-<random>`. A send starts by
removing the temp files of writers that were killed mid-message.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from newsletter.transports.base import Batch, Outcome, RecipientResult, build_mime


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        self.directory.mkdir(parents=True, exist_ok=True)
        results = []
        for recipient in batch.recipients:
            try:
                msg = build_mime(batch, recipient)
            except ValueError as exc:
                results.append(
                    RecipientResult(
                        recipient.email,
                        Outcome.FAILED,
                        error=str(exc),
                        delivery_id=recipient.delivery_id,
                    )
                )
                continue
            # One-off mails (confirmation, welcome) carry a UTC time so names sort by age
            # even when two are written within one tick of the file system's clock.
            stem = (
                f"delivery-{recipient.delivery_id:09d}"
                if recipient.delivery_id is not None
                else f"mail-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
            )
            path = self.directory / f"{stem}.eml"
            tmp = self.directory / f".{stem}.{os.getpid()}.tmp"
            tmp.write_bytes(bytes(msg))
            os.replace(tmp, path)
            results.append(
                RecipientResult(
                    recipient.email,
                    Outcome.SENT,
                    message_id=str(msg["Message-ID"]),
                    delivery_id=recipient.delivery_id,
                )
            )
        return results

    def begin_send(self) -> int:
        """Remove temp files left by a writer that died mid-message (kill -9); a live
        writer's are kept (the pid in their name). Called when a send starts; returns how
        many were removed."""
        removed = 0
        for tmp in self.directory.glob(".*.tmp"):
            pid = tmp.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def close(self) -> None:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
