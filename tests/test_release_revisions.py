"""Issue 21: approved means this exact revision, tested and confirmed (SQLite and PostgreSQL).

The release path is called directly here (the clock's `send_due_issues`, `start_send`), so a
rule that only the desk's pages kept would fail these tests.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from newsletter import approval, release
from newsletter.desk import editing
from newsletter.errors import NewsletterError
from newsletter.models import AuditEntry, Delivery, Issue, IssuePaper, IssueRevision, Paper
from newsletter.papers.validation import normalize_title
from newsletter.web.app import create_app
from tests.test_desk import (
    EDITOR,
    MONTH,
    confirm,
    desk_settings,
    mails,
    send_test,
    sign_in,
    subscribe,
    with_issue,
)


@pytest.fixture
def desk(settings):
    return desk_settings(settings)


def _issue(engine) -> Issue:
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
        session.expunge(issue)
        return issue


def _deliveries(engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Delivery)).all())


def _tested_and_scheduled(engine, desk, when: datetime) -> None:
    approval.send_test(engine, desk, MONTH, EDITOR, EDITOR)
    with Session(engine) as session:
        approval.schedule(session, desk, MONTH, when, _issue(engine).revision, EDITOR)
        session.commit()


def test_every_edit_is_a_revision_with_its_snapshot(engine, desk) -> None:
    with_issue(engine)
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        first = issue.revision
        editing.set_subject(session, MONTH, "A new subject", EDITOR)
        paper_id = session.exec(select(IssuePaper.paper_id)).first()
        editing.edit_paper(session, MONTH, paper_id, "Plain words.", ["optimization"], EDITOR)
        editing.set_subject(session, MONTH, "A new subject", EDITOR)  # no change: no revision
        session.commit()
        rows = session.exec(select(IssueRevision).order_by(IssueRevision.number)).all()
    assert [r.number for r in rows] == [first + 1, first + 2]
    assert rows[0].snapshot["subject"] == "A new subject" and rows[0].reason == "subject changed"
    edited = next(p for p in rows[1].snapshot["papers"] if p["id"] == paper_id)
    assert edited["summary"] == "Plain words." and edited["topics"] == ["optimization"]
    assert "summary" in rows[1].reason


def test_an_edit_after_scheduling_withdraws_it_and_the_clock_sends_nothing(engine, desk) -> None:
    with_issue(engine)
    subscribe(engine, 3)
    when = datetime.now(UTC) + timedelta(minutes=5)
    _tested_and_scheduled(engine, desk, when)
    with Session(engine) as session:
        editing.set_subject(session, MONTH, "Changed after the test copy", EDITOR)
        session.commit()
    issue = _issue(engine)
    assert (issue.status, issue.scheduled_for, issue.approved_revision) == ("draft", None, None)
    assert issue.status_reason.startswith("approval withdrawn: subject changed")
    assert release.send_due_issues(engine, desk, now=when + timedelta(minutes=1)) == []
    assert _deliveries(engine) == 0


def test_a_leftover_schedule_from_before_an_edit_never_sends(engine, desk) -> None:
    """Content changed behind the desk's back (a script, SQL) while the schedule stayed."""
    with_issue(engine)
    subscribe(engine, 3)
    when = datetime.now(UTC)
    _tested_and_scheduled(engine, desk, when)
    with Session(engine) as session:
        paper_id = session.exec(select(IssuePaper.paper_id)).first()
        session.execute(update(Paper).where(Paper.id == paper_id).values(summary="Rewritten."))
        session.commit()
    outcomes = release.send_due_issues(engine, desk, now=when + timedelta(seconds=5))
    assert outcomes == [f"{MONTH}: refused"]
    assert _deliveries(engine) == 0 and mails(desk)[-1]["To"] == EDITOR  # only the test copy
    issue = _issue(engine)
    assert issue.status == "draft" and issue.approved_revision is None
    with Session(engine) as session:
        refused = session.exec(
            select(AuditEntry).where(AuditEntry.action == "issue.release_refused")
        ).one()
        assert refused.actor == "clock" and "summary edited" in refused.detail
    # And a schedule of an older revision number, set directly, refuses as well.
    with Session(engine) as session:
        session.execute(
            update(Issue).values(status="approved", approved_revision=1, scheduled_for=when)
        )
        session.commit()
    assert release.send_due_issues(engine, desk, now=when + timedelta(seconds=5)) == [
        f"{MONTH}: refused"
    ]
    assert _deliveries(engine) == 0


def test_start_send_without_an_approved_revision_refuses(engine, desk) -> None:
    with_issue(engine)
    subscribe(engine, 2)
    with pytest.raises(release.ReleaseRefused, match="no approved revision"):
        release.start_send(engine, desk, MONTH, deliver_here=True)
    assert _deliveries(engine) == 0


def test_approval_needs_a_test_copy_of_that_revision(engine, desk) -> None:
    with_issue(engine)
    revision = _issue(engine).revision
    with Session(engine) as session, pytest.raises(NewsletterError, match="never test-sent"):
        approval.approve_now(session, desk, MONTH, revision, EDITOR)
    approval.send_test(engine, desk, MONTH, EDITOR, EDITOR)
    with Session(engine) as session:
        with pytest.raises(approval.StaleRevision, match="changed since you looked"):
            approval.approve_now(session, desk, MONTH, revision - 1, EDITOR)
        issue = approval.approve_now(session, desk, MONTH, revision, EDITOR)
        session.commit()
        assert (issue.approved_revision, issue.approved_by) == (revision, EDITOR)


def test_two_clocks_and_a_desk_approval_racing_send_once(engine, desk) -> None:
    with_issue(engine)
    subscribe(engine, 20)
    approval.send_test(engine, desk, MONTH, EDITOR, EDITOR)
    revision = _issue(engine).revision
    barrier = threading.Barrier(3)
    results: list[object] = []

    def clock() -> None:
        barrier.wait()
        for _ in range(20):
            results.extend(release.send_due_issues(engine, desk, deliver_here=True))

    def desk_approval() -> None:
        barrier.wait()
        with Session(engine) as session:
            approval.approve_now(session, desk, MONTH, revision, EDITOR)
            session.commit()

    threads = [threading.Thread(target=clock) for _ in range(2)]
    threads.append(threading.Thread(target=desk_approval))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Whichever check found it due started it, once; if neither did yet, a last check does.
    results.extend(release.send_due_issues(engine, desk, deliver_here=True))
    assert results.count(f"{MONTH}: sent") == 1, results
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert len(rows) == 20 and {r.status for r in rows} == {"sent"}
    readers = [m["To"] for m in mails(desk) if m["To"].startswith("reader")]
    assert len(readers) == 20 == len(set(readers))


def test_test_copies_any_address_rate_limited_and_links_that_change_nothing(
    engine, desk, settings
) -> None:
    public = desk_settings(
        settings,
        base_url="https://news.example.org",
        allowed_hosts="testserver,news.example.org",
        from_="ML Foundations <news@news.example.org>",
    )
    with_issue(engine)
    subscribe(engine, 1)
    sent = approval.send_test(
        engine, public, MONTH, "a@example.net, b@example.net", EDITOR, each_variant=True
    )
    assert len(sent) == 2  # one variant (everything) for the one reader, to two addresses
    copy = mails(public)[-1]
    body = copy.get_body(preferencelist=("html",)).get_content()
    assert copy["Subject"].startswith(f"[TEST r{_issue(engine).revision}] ")
    browser = re.search(r'href="(https://news\.example\.org/issues/[^"]+key=[^"]+)"', body)
    assert browser and "PREVIEW-NOT-A-REAL-TOKEN" not in body
    assert "https://news.example.org/test-copy/unsubscribe" in body
    client = TestClient(create_app(public), base_url="https://news.example.org")
    path = browser.group(1).replace("&amp;", "&").removeprefix("https://news.example.org")
    page = client.get(path)  # no session, no token: the signed key opens the draft
    assert page.status_code == 200 and "read-only" in page.text
    assert client.get(f"/issues/{MONTH}/preview").status_code == 404  # without the key: none
    tampered = client.get(path[:-3] + "xyz")
    assert tampered.status_code == 404
    for link in ("/test-copy/unsubscribe", "/test-copy/preferences"):
        for method in ("GET", "POST"):
            answer = client.request(method, link)
            assert answer.status_code == 200 and "This was a test copy" in answer.text
    with Session(engine) as session:
        assert session.exec(select(Issue)).one().status == "draft"
    # 20 an hour per editor: 2 sent, 18 more fit, the 19th does not.
    for _ in range(3):
        approval.send_test(engine, public, MONTH, [f"r{i}@example.net" for i in range(5)], EDITOR)
    approval.send_test(
        engine, public, MONTH, "last@example.net,last2@example.net,x@example.net", EDITOR
    )
    with pytest.raises(NewsletterError, match="20 an hour"):
        approval.send_test(engine, public, MONTH, "one-more@example.net", EDITOR)


def test_a_stale_confirmation_answers_409_and_sends_nothing(engine, desk) -> None:
    with_issue(engine)
    subscribe(engine, 2)
    client = TestClient(create_app(desk), follow_redirects=False)
    csrf = sign_in(client)
    base = f"/admin/issues/{MONTH}"
    send_test(client, base, csrf)
    page = client.post(base + "/approve", data={"csrf_token": csrf}).text
    shown = re.search(r'name="revision" value="(\d+)"', page).group(1)
    assert "Send revision" in page and 'data-field="recipients">2<' in page
    client.post(base + "/subject", data={"subject": "Edited in another tab", "csrf_token": csrf})
    stale = client.post(base + "/approve", data={"csrf_token": csrf, "revision": shown})
    assert stale.status_code == 409 and "subject changed" in stale.text
    assert _issue(engine).status == "draft"
    assert release.send_due_issues(engine, desk, deliver_here=True) == []
    assert _deliveries(engine) == 0
    # The progress panel of an approved issue waits for the clock, not "0 of 0".
    send_test(client, base, csrf)
    confirm(client, base, "approve", csrf)
    waiting = client.get(base + "/progress.json").json()["waiting"]
    assert waiting == f"waiting for the clock (next check within {desk.schedule_check_seconds:g} s)"


def _pty_run(env: dict[str, str], args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (a person at a terminal), answering its question."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    answered = False
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(leader, answer)
            answered = True
    os.close(leader)
    return proc.wait(timeout=120), seen.decode(errors="replace")


def test_issue_send_asks_on_a_terminal_and_no_sends_nothing(engine, settings, cli_env) -> None:
    with_issue(engine)
    subscribe(engine, 3)
    env = cli_env()
    code, out = _pty_run(env, ["issue", "send", MONTH], b"n\n")
    assert code == 1 and "Send revision" in out and "to 3 people? [y/N]" in out, out
    assert "was never test-sent" in out and "nothing was done" in out
    assert _deliveries(engine) == 0
    code, out = _pty_run(env, ["issue", "send", MONTH], b"y\n")
    assert code == 0 and "Issue 2026-05 is sent." in out, out
    assert _deliveries(engine) == 3


def test_cli_imports_are_audited_and_an_import_that_rewrites_a_listed_paper_withdraws(
    engine, desk, cli, tmp_path
) -> None:
    with_issue(engine)
    _tested_and_scheduled(engine, desk, datetime.now(UTC) + timedelta(hours=1))
    people = tmp_path / "people.csv"
    people.write_text("email,topics\nvouched@example.org,optimization\n", encoding="utf-8")
    assert cli("subscribers", "import", str(people), "--confirmed").exit_code == 0
    with Session(engine) as session:
        paper = session.exec(
            select(Paper).join(IssuePaper, IssuePaper.paper_id == Paper.id).limit(1)
        ).one()
        paper.normalized_title = normalize_title(paper.title)  # the sample's keys are synthetic
        session.add(paper)
        session.commit()
        session.refresh(paper)
    rewritten = tmp_path / "rewritten.yaml"
    rewritten.write_text(
        "- title: " + json.dumps(paper.title) + "\n"
        "  summary: A summary rewritten by a later import.\n"
        f"  url: {paper.url or 'https://example.org/paper'}\n"
        f"  published: {paper.published.isoformat()}\n",
        encoding="utf-8",
    )
    imported = cli("papers", "import", str(rewritten))
    assert imported.exit_code == 0 and "1 updated" in imported.stdout, imported.stdout
    issue = _issue(engine)
    assert (issue.status, issue.scheduled_for) == ("draft", None)
    assert "papers imported from rewritten.yaml" in issue.status_reason
    with Session(engine) as session:
        entries = {e.action: e for e in session.exec(select(AuditEntry)).all()}
    assert entries["subscribers.import"].actor.startswith("cli:")
    assert (
        "--confirmed: consent vouched for by the operator" in entries["subscribers.import"].detail
    )
    assert entries["papers.import"].actor.startswith("cli:")
    assert entries["issue.approval_withdrawn"].actor.startswith("cli:")
