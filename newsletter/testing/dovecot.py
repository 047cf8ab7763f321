"""A throwaway Dovecot IMAP server on 127.0.0.1 for tests: config, users and Maildir in a
temp dir, plain-text login, no TLS.

Run as root (CI), the master stays root and mail is owned by the `dovecot` system user, the
way a packaged install runs it; run by a developer, everything runs as that developer.
Messages are dropped into the Maildir the way a local delivery agent would.

    with start_dovecot() as server:
        server.deliver(raw_bytes)
        url = server.url  # imap://bounces:secret@127.0.0.1:PORT/INBOX
"""

from __future__ import annotations

import contextlib
import grp
import mailbox
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.testing.postgres import free_port

DOVECOT_CANDIDATES = ["/usr/sbin/dovecot", shutil.which("dovecot") or ""]
USER = "bounces"
PASSWORD = "bounce-mailbox-secret"


class DovecotUnavailable(RuntimeError):
    pass


def find_dovecot() -> Path | None:
    for candidate in DOVECOT_CANDIDATES:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = newsletter-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class DovecotServer:
    process: subprocess.Popen[bytes]
    root: Path
    port: int
    uid: int
    gid: int
    _delivered: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / USER

    def deliver(self, raw: bytes) -> str:
        """Drop one message into the INBOX's `new/`, as a local delivery agent does."""
        box = mailbox.Maildir(self.maildir, create=True)
        key = box.add(mailbox.MaildirMessage(raw))
        os.chown(self.maildir / box._lookup(key), self.uid, self.gid)  # type: ignore[attr-defined]
        return key

    def clear(self) -> None:
        """Empty the INBOX and remove its sub-folders (between tests sharing one server)."""
        box = mailbox.Maildir(self.maildir, create=False)
        for key in list(box.keys()):
            box.discard(key)
        for folder in box.list_folders():
            shutil.rmtree(self.maildir / f".{folder}", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.maildir / "subscriptions").unlink()

    def message_count(self, folder: str = "") -> int:
        """Messages in the INBOX, or in a folder (Maildir++: `.Folder` under the INBOX)."""
        box = mailbox.Maildir(self.maildir, create=False)
        if not folder:
            return len(box)
        if folder not in box.list_folders():
            return 0
        return len(box.get_folder(folder))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_dovecot() -> DovecotServer:
    """Start a fresh server; raises DovecotUnavailable with the reason."""
    binary = find_dovecot()
    if binary is None:
        raise DovecotUnavailable("dovecot was not found (apt-get install dovecot-imapd)")
    try:  # as root, mail belongs to the packaged `dovecot` user; otherwise to the caller
        account = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    except KeyError:
        raise DovecotUnavailable(
            "there is no `dovecot` system user (apt-get install dovecot-imapd)"
        ) from None
    group = account.pw_gid
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    try:
        os.chmod(root, 0o755)
        port = free_port()
        (root / "run").mkdir()
        (root / "state").mkdir()
        mail = root / "mail" / USER
        mail.parent.mkdir()
        mailbox.Maildir(mail, create=True)
        for path in [root / "mail", *(root / "mail").rglob("*")]:
            os.chown(path, account.pw_uid, group)
        (root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{account.pw_uid}:{group}::{mail}::\n"
        )
        config = root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=root,
                port=port,
                user=account.pw_name,
                group=grp.getgrgid(group).gr_name,
                uid=account.pw_uid,
            )
        )
        process = subprocess.Popen(
            [str(binary), "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except (OSError, KeyError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise DovecotUnavailable(f"could not set up dovecot in {root}: {exc}") from None
    server = DovecotServer(process, root, port, account.pw_uid, group)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log = root / "dovecot.log"
            err += log.read_text(errors="replace")[-800:] if log.exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise DovecotUnavailable(f"dovecot exited: {err.strip()[-800:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(100).startswith(b"* OK"):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise DovecotUnavailable("dovecot did not answer on its port within 20 s")
