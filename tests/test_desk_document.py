"""Issue 22 (first part): history and restore, undo of a drop, moves that cross sections,
subscribers added and imported on the desk, the outbox's search and pages, no dead ends."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.issues import load_issue_contents
from newsletter.models import AuditEntry, Issue, IssuePaper
from newsletter.web.app import create_app
from subscribers.models import Subscriber
from tests.test_desk import MONTH, desk_settings, mails, sign_in, with_issue


@pytest.fixture
def desk(settings):
    return desk_settings(settings)


@pytest.fixture
def client(desk) -> TestClient:
    return TestClient(create_app(desk), follow_redirects=False)


def _issue(engine) -> Issue:
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        session.expunge(issue)
        return issue


def _order(engine) -> list[tuple[str, int]]:
    with Session(engine) as session:
        contents = load_issue_contents(session, session.exec(select(Issue)).one())
        return [(e.section, e.paper.id) for e in contents.entries]


def test_history_diff_restore_and_undo_of_a_drop(client, engine) -> None:
    with_issue(engine)
    csrf = sign_in(client)
    base = f"/admin/issues/{MONTH}"
    client.post(base + "/subject", data={"subject": "First subject", "csrf_token": csrf})
    client.post(base + "/subject", data={"subject": "Second subject", "csrf_token": csrf})
    start = _issue(engine).revision
    history = client.get(base + "/history").text
    assert "subject changed" in history and f"Restore revision {start - 1}" in history
    diff = client.get(base + f"/history?a={start - 1}&b={start}").text
    assert "From revision" in diff and "First subject" in diff and "Second subject" in diff
    # Restore the older revision: a new revision that says what it said.
    done = client.post(base + "/restore", data={"revision": str(start - 1), "csrf_token": csrf})
    assert done.status_code == 303
    issue = _issue(engine)
    assert issue.subject == "First subject" and issue.revision == start + 1
    # Drop a paper, then undo: it is back in its place.
    before = _order(engine)
    victim = before[2][1]
    dropped = client.post(base + f"/papers/{victim}/drop", data={"csrf_token": csrf})
    assert dropped.status_code == 303 and dropped.headers["location"].endswith("#papers-h")
    page = client.get(dropped.headers["location"].split("#")[0]).text
    undo = re.search(r'id="undo".*?name="revision" value="(\d+)"', page, re.S)
    assert undo and int(undo.group(1)) == start + 1
    client.post(base + "/restore", data={"revision": undo.group(1), "csrf_token": csrf})
    assert _order(engine) == before
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry)).all()]
    assert actions.count("issue.restore") == 2
    # A stale undo link (the draft changed since) offers nothing.
    client.post(base + "/note", data={"note": "later", "csrf_token": csrf})
    stale = client.get(base + f"?done=drop&before={start + 1}").text
    assert 'id="undo"' not in stale


def test_move_crosses_section_edges_and_refuses_only_at_the_ends(client, engine) -> None:
    with_issue(engine)
    csrf = sign_in(client)
    base = f"/admin/issues/{MONTH}"
    order = _order(engine)
    sections = list(dict.fromkeys(s for s, _ in order))
    last_of_first = [p for s, p in order if s == sections[0]][-1]
    moved = client.post(
        base + f"/papers/{last_of_first}/move", data={"direction": "down", "csrf_token": csrf}
    )
    assert moved.status_code == 303 and moved.headers["location"].endswith(
        f"#paper-{last_of_first}"
    )
    after = _order(engine)
    first_of_second = next(p for s, p in after if s == sections[1])
    assert first_of_second == last_of_first  # now first in the next section
    top = after[0][1]
    refused = client.post(
        base + f"/papers/{top}/move", data={"direction": "up", "csrf_token": csrf}
    )
    assert refused.status_code == 400 and "already first in the issue" in refused.text
    with Session(engine) as session:
        listing = session.get(IssuePaper, (_issue(engine).id, last_of_first))
        assert listing.topic_slug == sections[1]


def test_subscribers_added_and_imported_on_the_desk(client, engine, desk) -> None:
    csrf = sign_in(client)
    one = client.post(
        "/admin/subscribers/add",
        data={
            "email": "Vouched@Example.org",
            "topics": ["optimization"],
            "vouched": "yes",
            "csrf_token": csrf,
        },
    )
    assert one.status_code == 303
    asked = client.post(
        "/admin/subscribers/add", data={"email": "asked@example.org", "csrf_token": csrf}
    )
    assert asked.status_code == 303
    assert any(m["To"] == "asked@example.org" for m in mails(desk))  # double opt-in
    bad = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={
            "file": ("people.csv", b"email,topics\nok@example.org,\nnot-an-address,\n", "text/csv")
        },
    )
    assert bad.status_code == 400 and "people.csv" in bad.text
    good = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf, "vouched": "yes"},
        files={
            "file": (
                "people.csv",
                b"email,topics\na@example.org,optimization\nb@example.org,\n",
                "text/csv",
            )
        },
    )
    assert good.status_code == 303
    page = client.get(good.headers["location"]).text
    assert "Imported 2 subscriber(s)." in page and "Optimization" in page
    with Session(engine) as session:
        emails = {s.email: s.status for s in session.exec(select(Subscriber)).all()}
        entries = session.exec(select(AuditEntry).where(AuditEntry.actor != "system")).all()
    assert emails["a@example.org"] == "active" and "ok@example.org" not in emails
    assert {e.action for e in entries} >= {"subscriber.add", "subscribers.import"}
    assert any("vouched" in e.detail for e in entries if e.action == "subscribers.import")


def test_start_next_month_and_an_empty_month_leads_to_the_papers_page(client, engine) -> None:
    with_issue(engine)
    csrf = sign_in(client)
    page = client.get("/admin/issues").text
    assert "Start the June 2026 issue" in page and 'type="month"' in page
    empty = client.post("/admin/issues/compose", data={"month": "2031-01", "csrf_token": csrf})
    assert empty.status_code == 400 and 'href="/admin/papers?month=2031-01"' in empty.text
    assert "newsletter papers import" not in empty.text  # no CLI command on the desk


def test_a_dead_sign_in_link_leads_back_to_sign_in(client) -> None:
    gone = client.get("/admin/sign-in/not-a-real-link")
    assert gone.status_code == 400 and 'href="/admin/sign-in"' in gone.text


def test_outbox_pages_through_all_mail_and_searches(settings, tmp_path) -> None:
    from email.message import EmailMessage

    from newsletter.settings import load_settings

    local = load_settings(
        var_dir=tmp_path / "var",
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        postal_address=settings.postal_address,
        allowed_hosts="testserver",
        _env_file=None,
    )
    outbox = local.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    for i in range(450):
        msg = EmailMessage()
        msg["To"] = "editor@example.org" if i == 3 else f"reader{i}@example.org"
        msg["Subject"] = "Sign in to the desk" if i == 3 else f"Issue {i}"
        msg.set_content("body")
        (outbox / f"mail-{i:04d}.eml").write_bytes(bytes(msg))
    client = TestClient(create_app(local, bind_host="127.0.0.1"), base_url="http://127.0.0.1:8000")
    first = client.get("/outbox")
    assert first.status_code == 200 and "450 mails" in first.text and "page 1 of 3" in first.text
    assert client.get("/outbox?page=3").text.count("/outbox/mail-") == 50
    found = client.get("/outbox?q=SIGN+IN").text
    assert "1 mail matching" in found and "editor@example.org" in found


DATA = __import__("pathlib").Path(__file__).parent / "data" / "papers"


def test_arxiv_references_editors_paste() -> None:
    from newsletter.papers.arxiv import parse_arxiv_reference
    from newsletter.papers.validation import RecordError

    for text, expected in [
        ("2405.01234", "2405.01234"),
        (" 2405.01234v2 ", "2405.01234"),
        ("arXiv:2405.01234", "2405.01234"),
        ("https://arxiv.org/abs/2405.01234v2", "2405.01234"),
        ("https://arxiv.org/pdf/2405.01234v3.pdf", "2405.01234"),
        ("https://doi.org/10.48550/arXiv.2405.01234", "2405.01234"),
        ("math.OC/0601001", "math.OC/0601001"),
        ("http://arxiv.org/abs/hep-th/9901001v1", "hep-th/9901001"),
    ]:
        assert parse_arxiv_reference(text) == expected, text
    for bad in ("", "2405.1", "https://example.org/abs/2405.01234", "10.1145/3292500.3330701"):
        with pytest.raises(RecordError, match="not an arXiv id or link"):
            parse_arxiv_reference(bad)


def test_add_a_paper_by_arxiv_id_through_a_local_arxiv_api(settings, engine) -> None:
    from newsletter.testing.fake_sources import FakeSources
    from newsletter.testing.sample_issue import build_sample_issue

    with Session(engine) as session:
        build_sample_issue(session, "2026-07", papers=4)
    base = "/admin/issues/2026-07"
    answer = (DATA / "arxiv_id_answer.xml").read_bytes()
    with FakeSources(arxiv_pages=[answer]) as fake:
        desk = desk_settings(settings, arxiv_api_url=fake.arxiv_url)
        client = TestClient(create_app(desk), follow_redirects=False)
        csrf = sign_in(client)
        bad = client.post(base + "/save", data={"op": "arxiv", "arxiv": "nope", "csrf_token": csrf})
        assert bad.status_code == 400 and "not an arXiv id or link" in bad.text
        fake.arxiv_status = 503
        down = client.post(
            base + "/save", data={"op": "arxiv", "arxiv": "2606.01234", "csrf_token": csrf}
        )
        assert down.status_code == 400 and "arXiv API" in down.text
        fake.arxiv_status = 200
        added = client.post(
            base + "/save",
            data={"op": "arxiv", "arxiv": "https://arxiv.org/abs/2606.01234v2", "csrf_token": csrf},
        )
        assert added.status_code == 303, added.text
        assert fake.arxiv_queries[-1]["id_list"] == ["2606.01234"]
        fake.arxiv_pages = [(DATA / "arxiv_error.xml").read_bytes()]
        missing = client.post(
            base + "/save", data={"op": "arxiv", "arxiv": "2606.99999", "csrf_token": csrf}
        )
        assert missing.status_code == 400 and "arXiv API error: incorrect id format" in missing.text
    page = client.get(base).text
    assert "Thermodynamic Natural Gradient" in page
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == "2026-07")).one()
        listed = session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id)).all()
        assert len(listed) == 5 and any(r.late for r in listed)
        actions = {e.action for e in session.exec(select(AuditEntry)).all()}
    assert {"papers.import", "issue.add_paper"} <= actions
