"""The "start here" reading list: kept on the desk (from the archive or by arXiv id through
a local arXiv API, reordered, reworded, removed, every change audited), shown on
`/start-here`, the landing page and the welcome mail (live server), on both backends."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from newsletter.models import AuditEntry, Paper, StartHereItem
from newsletter.testing.fake_sources import FakeSources
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.web.app import create_app
from tests.test_desk import csrf_of, desk_settings, sign_in
from tests.test_reader import site as site  # noqa: F401 (the live-server fixture)
from tests.test_reader import subscribe_and_confirm

DATA = Path(__file__).parent / "data" / "papers"


def _archive_titles(engine, n: int) -> list[str]:
    with Session(engine) as session:
        build_sample_issue(session, "2026-05", papers=6)
        session.commit()
        return [p.title for p in session.exec(select(Paper).order_by(col(Paper.id))).all()][:n]


def _listed(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(StartHereItem, Paper)
            .join(Paper, col(Paper.id) == col(StartHereItem.paper_id))
            .order_by(col(StartHereItem.position))
        ).all()
        return [(paper.title, item.why) for item, paper in rows]


def test_desk_keeps_the_list_and_audits_every_change(settings, engine) -> None:
    first, second = _archive_titles(engine, 2)
    answer = (DATA / "arxiv_id_answer.xml").read_bytes()
    with FakeSources(arxiv_pages=[answer]) as fake:
        client = TestClient(
            create_app(desk_settings(settings, arxiv_api_url=fake.arxiv_url)),
            follow_redirects=False,
        )
        csrf = sign_in(client)
        page = client.get("/admin/start-here")
        assert page.status_code == 200 and "No papers yet" in page.text

        def add(reference: str, why: str):
            return client.post(
                "/admin/start-here/add",
                data={"reference": reference, "why": why, "csrf_token": csrf},
            )

        r = add(first.upper(), "The first thing to read.")
        assert r.status_code == 303, re.findall(r"role=.alert.>(.*?)<", r.text)
        assert add(second, "Then this one.").status_code == 303
        by_id = add("https://arxiv.org/abs/2606.01234v2", "A classic by arXiv id.")
        assert by_id.status_code == 303, by_id.text
        assert fake.arxiv_queries[-1]["id_list"] == ["2606.01234"]
        again = add(first, "Twice?")
        assert again.status_code == 400 and "already on the list" in again.text
        no_why = add(second, "   ")
        assert no_why.status_code == 400 and "why" in no_why.text
        unknown = add("A title nobody wrote", "x")
        assert unknown.status_code == 400
        assert "no paper in the archive is titled 'A title nobody wrote'" in html.unescape(
            unknown.text
        )
        forged = client.post("/admin/start-here/add", data={"reference": first, "why": "x"})
        assert forged.status_code == 403
    titles = [t for t, _ in _listed(engine)]
    assert titles[:2] == [first, second] and "Thermodynamic Natural Gradient" in titles[2]

    page = client.get("/admin/start-here").text
    ids = re.findall(r'action="/admin/start-here/(\d+)"', page)
    assert len(ids) == 3
    csrf = csrf_of(page)
    assert (
        client.post(
            f"/admin/start-here/{ids[2]}", data={"action": "up", "csrf_token": csrf}
        ).status_code
        == 303
    )
    assert (
        client.post(
            f"/admin/start-here/{ids[0]}",
            data={"action": "why", "why": "Reworded.", "csrf_token": csrf},
        ).status_code
        == 303
    )
    assert (
        client.post(
            f"/admin/start-here/{ids[1]}", data={"action": "remove", "csrf_token": csrf}
        ).status_code
        == 303
    )
    listed = _listed(engine)
    assert [w for _, w in listed] == ["Reworded.", "A classic by arXiv id."]
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry)).all()]
    for action in ("start_here.add", "start_here.move", "start_here.why", "start_here.remove"):
        assert action in actions
    assert actions.count("start_here.add") == 3
    gone = client.post(f"/admin/start-here/{ids[1]}", data={"action": "up", "csrf_token": csrf})
    assert gone.status_code == 400 and "no longer on the list" in gone.text


def test_readers_see_the_list_on_the_page_the_landing_and_the_welcome(site, engine) -> None:
    http, settings = site
    assert "Want the foundations first?" not in http.get("/").text
    assert "not put a reading list together yet" in http.get("/start-here").text
    titles = _archive_titles(engine, 4)
    with Session(engine) as session:
        papers = {p.title: p for p in session.exec(select(Paper)).all()}
        for position, title in enumerate(reversed(titles)):  # the editors' order, not the id's
            session.add(
                StartHereItem(paper_id=papers[title].id, position=position, why=f"Why {position}.")
            )
        session.commit()
    expected = list(reversed(titles))

    def shown(fragment: str) -> list[str]:
        block = re.search(r'<ol class="start-here">(.*?)</ol>', fragment, re.S).group(1)
        return [
            html.unescape(t) for t in re.findall(r'<a href="[^"]+" dir="auto">(.*?)</a>', block)
        ]

    page = http.get("/start-here")
    assert page.status_code == 200 and shown(page.text) == expected
    assert "Why 0." in page.text and "Why 3." in page.text
    landing = http.get("/").text
    assert "Want the foundations first?" in landing and shown(landing) == expected[:3]
    assert 'href="/start-here"' in landing

    subscribe_and_confirm(http, settings, "newbie@example.org", [])
    from tests.test_web import mails

    welcome = mails(settings)[-1]
    text = welcome.get_body(preferencelist=("plain",)).get_content()
    positions = [text.index(title.split()[0] + " " + title.split()[1]) for title in expected]
    assert positions == sorted(positions)
    assert "Why 0." in text and f"{settings.base_url}/start-here" in text
    body = welcome.get_body(preferencelist=("html",)).get_content()
    assert all(html.escape(t, quote=False) in body or t in body for t in expected)
