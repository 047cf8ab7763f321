"""The default transport: one `.eml` file per recipient, so the service runs with no account.

Files are written atomically (temp file, then rename) and named by delivery id, so a resent
batch overwrites rather than duplicates, and a reader never sees half a message. Mails
outside a send (no delivery id) are named `mail-<UTC time>-<random>`.
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

    def close(self) -> None:
        pass
