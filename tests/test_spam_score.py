"""SpamAssassin's stock rules (Debian's `spamassassin`, local tests only) score nothing on
any mail we send: the issue, the confirmation and the welcome, as written to the outbox."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.delivery import send_issue
from newsletter.models import Topic
from newsletter.settings import load_settings
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.testing.sample_send import seed_subscribers
from newsletter.web.app import create_app
from newsletter.web.ratelimit import ClientRateLimiter

BASE = "https://news.example.org"
IN_CI = os.environ.get("CI", "").lower() == "true"
SCORE_RE = re.compile(
    r"^X-Spam-Status: \w+, score=(-?[\d.]+).*?tests=([^\n]*(?:\n\s+[^\n]*)*)", re.M
)
RULE_RE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.M)


@pytest.fixture(scope="module")
def spamassassin() -> str:
    path = shutil.which("spamassassin")
    if path is None:
        if IN_CI:
            pytest.fail("spamassassin is required under CI=true (.ci/run installs it)")
        pytest.skip("spamassassin is not installed (Debian package `spamassassin`)")
    return path


def score(spamassassin: str, path: Path) -> tuple[float, list[str]]:
    """Total score and the rules that scored above zero, from `spamassassin -L -t`."""
    with path.open("rb") as mail:
        report = subprocess.run(
            [spamassassin, "-L", "-t"], stdin=mail, capture_output=True, timeout=120, check=True
        ).stdout.decode("utf-8", "replace")
    match = SCORE_RE.search(report)
    assert match, report[:2000]
    details = report.split("Content analysis details", 1)[-1]
    scored = [f"{rule} {pts}" for pts, rule in RULE_RE.findall(details) if float(pts) > 0]
    return float(match.group(1)), scored


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_issue_confirmation_and_welcome_score_nothing(
    spamassassin: str, session: Session, settings, tmp_path: Path
) -> None:
    public = load_settings(
        var_dir=tmp_path / "var",
        database_url=settings.database_url,
        base_url=BASE,
        secret_key="a-long-random-production-like-secret-value",
        postal_address="ML Foundations, 1 Example Street, 10115 Berlin",
        from_="ML Foundations <newsletter@news.example.org>",
        reply_to="The Editor <editor@news.example.org>",
        _env_file=None,
    )
    build_sample_issue(session, "2026-05", papers=20)
    first_topic = session.exec(select(Topic.slug).order_by(Topic.position)).first()
    seed_subscribers(session, 1, [(first_topic,)])
    session.commit()
    send_issue(session.get_bind(), public, "2026-05")
    app = create_app(public)
    app.state.subscribe_limiter = ClientRateLimiter(1000, 600)
    client = TestClient(app, base_url=BASE)
    client.post("/subscribe", data={"email": "ada@example.com", "topics": [first_topic]})
    outbox = Path(public.outbox_dir)
    confirmation = next(p for p in outbox.glob("mail-*.eml") if b"/confirm/" in p.read_bytes())
    parsed = message_from_bytes(confirmation.read_bytes(), policy=policy.default)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    path = re.search(r"/confirm/[A-Za-z0-9_.\-]+", text).group(0)
    assert client.post(path).status_code == 200
    mails = {
        "issue": next(outbox.glob("delivery-*.eml")),
        "confirmation": confirmation,
        "welcome": next(p for p in outbox.glob("mail-*.eml") if p != confirmation),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        scores = pool.map(lambda p: score(spamassassin, p), mails.values())
        results = dict(zip(mails, scores, strict=True))
    for kind, (total, scored) in results.items():
        assert total <= 0 and not scored, (kind, total, scored)
