"""Summaries drafted by a language model, on SQLite and PostgreSQL, against a fake
OpenAI-compatible server on 127.0.0.1 (`newsletter.testing.fake_llm`) spoken to by the
official `openai` client: drafts stored with provenance, refused answers fall back, nothing is
asked twice, 429/5xx/timeouts retried, `review` never mails an unreviewed draft, `auto` mails
it and withdraws an approval of the old text, `off` never opens a connection.

The papers are arXiv's own API answer (tests/data/papers/arxiv_api_answer.xml): abstracts
only, as the monthly fetch brings them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import revisions
from newsletter.desk.drafts import accept_draft
from newsletter.issues import compose_issue
from newsletter.models import (
    DraftStatus,
    Issue,
    IssuePaper,
    IssueStatus,
    JobRun,
    Paper,
    PaperTopic,
    SummaryDraft,
)
from newsletter.monthly import run_monthly_job
from newsletter.papers.draft_status import RELEVANCE_WEIGHT, unreviewed, unreviewed_notice
from newsletter.papers.drafting import draft_papers
from newsletter.papers.language_model import MAX_SUMMARY, PROMPT_VERSION
from newsletter.papers.store import import_paths
from newsletter.papers.summaries import abstract_excerpt
from newsletter.rendering import clear_render_cache, render_issue_variant
from newsletter.settings import Settings, SettingsError, load_settings
from newsletter.testing.fake_llm import FakeLLM, house_style_summary

ARXIV = Path(__file__).parent / "data" / "papers" / "arxiv_api_answer.xml"
MONTH = "2026-06"
NATGRAD = "Thermodynamic Natural Gradient Descent"
SPLITTING = "Operator Splitting for Stiff Systems"
BENCHMARKS = "A Note on Benchmarks"


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM(retry_after=1, hang=3.0) as server:
        yield server


@pytest.fixture
def papers(engine: Engine) -> Engine:
    (report,) = import_paths(engine, [ARXIV], "feed")
    assert report.error is None, report.error
    return engine


def llm(settings: Settings, fake: FakeLLM, mode: str = "review", **extra: object) -> Settings:
    values = {
        "llm_summaries": mode,
        "llm_base_url": fake.base_url,
        "llm_model": "fake-model-1",
        "llm_retry_delay": 0.05,
        "llm_timeout": 1.0,
        **extra,
    }
    return settings.model_copy(update=values)


def paper(engine: Engine, title: str) -> Paper:
    with Session(engine) as session:
        found = session.exec(select(Paper).where(Paper.title.startswith(title[:20]))).one()  # type: ignore[attr-defined]
        return found


def drafts(engine: Engine) -> dict[str, SummaryDraft]:
    with Session(engine) as session:
        rows = session.exec(select(SummaryDraft, Paper).join(Paper)).all()
        return {p.title: d for d, p in rows}


def email_html(engine: Engine, settings: Settings) -> str:
    clear_render_cache()
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
        return render_issue_variant(session, issue, "", settings).html


def compose(engine: Engine) -> None:
    with Session(engine) as session:
        compose_issue(session, MONTH, "What's new")
        session.commit()


def test_settings_need_an_endpoint_and_a_model_unless_off() -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_LLM_BASE_URL: required"):
        load_settings(llm_summaries="review", llm_model="m", _env_file=None)
    with pytest.raises(SettingsError, match="NEWSLETTER_LLM_MODEL: required"):
        load_settings(
            llm_summaries="auto", llm_base_url="http://localhost:11434/v1", _env_file=None
        )
    with pytest.raises(SettingsError, match="NEWSLETTER_LLM_BASE_URL: must be the API"):
        load_settings(llm_base_url="localhost:11434", _env_file=None)
    with pytest.raises(SettingsError, match="NEWSLETTER_LLM_SUMMARIES"):
        load_settings(llm_summaries="sometimes", _env_file=None)
    assert load_settings(_env_file=None).llm_summaries == "off"


def test_off_never_opens_a_connection(papers: Engine, settings: Settings, fake: FakeLLM) -> None:
    off = llm(settings, fake, "off", require_approval=True)  # the job composes, sends nothing
    report = draft_papers(papers, off, month=MONTH)
    run_monthly_job(papers, off, month=MONTH, deliver_here=False)
    assert report.mode == "off" and report.drafted == 0
    assert fake.connections == 0 and fake.requests == []
    # The same calls with drafting on do reach the server: the counter counts.
    draft_papers(papers, llm(settings, fake), month=MONTH)
    assert fake.connections > 0 and len(fake.requests) == 3


def test_drafts_are_stored_with_provenance_and_never_asked_twice(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    review = llm(settings, fake)
    first = draft_papers(papers, review, month=MONTH)
    assert (first.drafted, first.failed, first.cached) == (3, 0, 0)
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    stored = drafts(papers)
    natgrad = stored[NATGRAD]
    assert natgrad.summary == house_style_summary(NATGRAD)
    assert natgrad.model == "fake-model-1" and natgrad.prompt_version == PROMPT_VERSION
    assert natgrad.status == DraftStatus.DRAFTED and natgrad.topics == ["optimization"]
    assert natgrad.prompt_tokens > 0 and natgrad.relevance == pytest.approx(0.8)
    # What went out: the title and the abstract in its delimited block, structured output.
    body = fake.requests[0]
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    assert "<<<ABSTRACT" in user and "ABSTRACT>>>" in user
    assert body["response_format"]["type"] == "json_schema"
    assert body["model"] == "fake-model-1"
    # Review mode: the paper's own summary is untouched until an editor accepts.
    assert paper(papers, NATGRAD).summary == paper(papers, NATGRAD).abstract

    again = draft_papers(papers, review, month=MONTH)
    assert (again.drafted, again.cached, len(fake.requests)) == (0, 3, 3)

    with Session(papers) as session:  # a new abstract is a new question
        row = session.exec(select(Paper).where(Paper.title == SPLITTING)).one()
        row.abstract = row.summary = row.abstract + " A revised version adds experiments."
        session.add(row)
        session.commit()
    changed = draft_papers(papers, review, month=MONTH)
    assert (changed.drafted, changed.cached, fake.requests_for(SPLITTING)) == (1, 2, 2)

    other_model = draft_papers(papers, llm(settings, fake, llm_model="fake-model-2"), month=MONTH)
    assert other_model.drafted == 3
    redraft = draft_papers(papers, review, month=MONTH, redraft=True)
    assert redraft.drafted == 3 and len(fake.requests) == 3 + 1 + 3 + 3


@pytest.mark.parametrize(
    "behaviour",
    ["html", "url", "injection", "unknown-topic", "long", "malformed", "first-person"],
)
def test_a_refused_answer_is_asked_once_more_then_the_paper_keeps_its_fallback(
    papers: Engine, settings: Settings, fake: FakeLLM, behaviour: str
) -> None:
    fake.script(NATGRAD, behaviour, behaviour)  # refused twice: falls back
    fake.script(SPLITTING, behaviour)  # refused once: the retry's answer is kept
    report = draft_papers(papers, llm(settings, fake), month=MONTH)
    assert (report.drafted, report.failed) == (2, 1)
    assert fake.requests_for(NATGRAD) == 2 and fake.requests_for(SPLITTING) == 2
    stored = drafts(papers)
    assert stored[NATGRAD].status == DraftStatus.FAILED
    assert "refused twice" in stored[NATGRAD].error and stored[NATGRAD].summary == ""
    assert stored[SPLITTING].summary == house_style_summary(SPLITTING)
    assert NATGRAD[:30] in report.message() and "1 failed" in report.message()
    retry = fake.requests[-1] if fake.requests_for(SPLITTING) else None
    assert retry is not None
    # A failed paper is asked again on the next run (the endpoint may be fixed by then).
    later = draft_papers(papers, llm(settings, fake), month=MONTH)
    assert (later.drafted, later.cached) == (1, 2)


def test_long_output_is_refused_for_its_length(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    fake.script(NATGRAD, "long", "long")
    draft_papers(papers, llm(settings, fake), month=MONTH)
    assert f"limit {MAX_SUMMARY}" in drafts(papers)[NATGRAD].error
    assert "2,000 characters" in drafts(papers)[NATGRAD].error


def test_429_honours_retry_after_and_5xx_timeouts_and_bad_bodies_back_off(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    fake.script(NATGRAD, "429")
    fake.script(SPLITTING, "500", "broken-body")
    fake.script(BENCHMARKS, "timeout")
    started = time.monotonic()
    report = draft_papers(papers, llm(settings, fake, llm_timeout=0.5), month=MONTH)
    took = time.monotonic() - started
    assert (report.drafted, report.failed) == (3, 0)
    assert took >= 1.0  # waited the Retry-After second, not the 0.05 s back-off
    assert fake.requests_for(NATGRAD) == 2 and fake.requests_for(SPLITTING) == 3
    assert fake.requests_for(BENCHMARKS) == 2


def test_after_the_retries_the_paper_keeps_its_fallback_and_the_run_says_so(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    fake.script(NATGRAD, "500", "500", "500")
    report = draft_papers(papers, llm(settings, fake, llm_retries=2), month=MONTH)
    assert (report.drafted, report.failed) == (2, 1)
    assert fake.requests_for(NATGRAD) == 3
    assert "500 server error; gave up after 3 attempts" in drafts(papers)[NATGRAD].error


def test_review_mode_never_mails_an_unreviewed_draft(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    review = llm(settings, fake)
    draft_papers(papers, review, month=MONTH)
    compose(papers)
    html = email_html(papers, review)
    natgrad = paper(papers, NATGRAD)
    assert house_style_summary(NATGRAD)[:60] not in html
    assert abstract_excerpt(natgrad.abstract)[:60] in html
    with Session(papers) as session:
        issue = session.exec(select(Issue)).one()
        assert {p.title for p, _ in unreviewed(session, issue)} == {NATGRAD, SPLITTING, BENCHMARKS}
        notice = unreviewed_notice(session, issue)
        assert "3 summaries" in notice[0] and any(NATGRAD in line for line in notice)
        before = issue.revision
        accept_draft(session, MONTH, natgrad.id, "editor@example.org")  # type: ignore[arg-type]
        session.commit()
        assert issue.revision == before + 1  # the acceptance is a revision of its own
        assert {p.title for p, _ in unreviewed(session, issue)} == {SPLITTING, BENCHMARKS}
    html = email_html(papers, review)
    assert house_style_summary(NATGRAD)[:60] in html
    assert house_style_summary(SPLITTING)[:60] not in html
    assert drafts(papers)[NATGRAD].reviewed_by == "editor@example.org"
    # An accepted summary is a person's now: a redraft leaves it alone.
    assert draft_papers(papers, review, month=MONTH, redraft=True).human == 1


def test_an_edited_acceptance_keeps_the_editors_words(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    draft_papers(papers, llm(settings, fake), month=MONTH)
    compose(papers)
    natgrad = paper(papers, NATGRAD)
    with Session(papers) as session:
        accept_draft(session, MONTH, natgrad.id, "ed@example.org", "Editor's own words.")  # type: ignore[arg-type]
        session.commit()
    assert paper(papers, NATGRAD).summary == "Editor's own words."
    assert drafts(papers)[NATGRAD].status == DraftStatus.ACCEPTED


def test_auto_mode_mails_drafts_and_withdraws_an_approval_of_the_old_text(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    compose(papers)
    with Session(papers) as session:  # an editor approved revision 1 (the abstracts)
        issue = session.exec(select(Issue)).one()
        issue.status, issue.approved_revision = IssueStatus.APPROVED, issue.revision
        session.add(issue)
        session.commit()
    auto = llm(settings, fake, "auto")
    report = draft_papers(papers, auto, month=MONTH)
    assert report.applied == 3
    with Session(papers) as session:
        issue = session.exec(select(Issue)).one()
        assert issue.status == IssueStatus.DRAFT and issue.approved_revision is None
        assert issue.status_reason.startswith(revisions.WITHDRAWN)
        assert "summaries drafted by fake-model-1" in issue.status_reason
        assert len(unreviewed(session, issue)) == 3  # in the email, still not reviewed
    assert house_style_summary(NATGRAD)[:60] in email_html(papers, auto)
    # Auto drafts are the model's words, not a person's: a redraft may replace them.
    assert draft_papers(papers, auto, month=MONTH, redraft=True).drafted == 3


def test_the_models_topics_are_used_only_where_the_tagger_was_unsure(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    def topics(title: str) -> set[str]:
        with Session(papers) as session:
            pid = paper(papers, title).id
            return set(
                session.exec(select(PaperTopic.topic_slug).where(PaperTopic.paper_id == pid)).all()
            )

    before = {t: topics(t) for t in (NATGRAD, SPLITTING, BENCHMARKS)}
    assert before[BENCHMARKS] == {"general"}
    fake.topics = ["learning-theory"]
    report = draft_papers(papers, llm(settings, fake), month=MONTH)
    assert report.retopiced == 1
    assert topics(BENCHMARKS) == {"learning-theory"}
    assert topics(NATGRAD) == before[NATGRAD] and topics(SPLITTING) == before[SPLITTING]


def test_relevance_joins_the_ranking_of_the_emails_caps(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    def scores() -> dict[str, int]:
        with Session(papers) as session:
            rows = session.exec(select(IssuePaper, Paper).join(Paper)).all()
            return {p.title: ip.score for ip, p in rows}

    compose(papers)
    keywords_only = scores()
    fake.topics = []
    for title, relevance in ((NATGRAD, "ok:0.0"), (SPLITTING, "ok:1.0"), (BENCHMARKS, "ok:0.5")):
        fake.script(title, relevance)
    draft_papers(papers, llm(settings, fake), month=MONTH)
    compose(papers)
    assert scores() == {
        NATGRAD: keywords_only[NATGRAD],
        SPLITTING: keywords_only[SPLITTING] + RELEVANCE_WEIGHT,
        BENCHMARKS: keywords_only[BENCHMARKS] + round(RELEVANCE_WEIGHT * 0.5),
    }


def test_the_monthly_job_drafts_after_fetching_and_records_the_run(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    fake.script(NATGRAD, "500", "500", "500", "500")
    review = llm(settings, fake, llm_retries=1)
    outcome = run_monthly_job(papers, review, month=MONTH, deliver_here=False)
    assert outcome.outcome != "failed", outcome.message
    with Session(papers) as session:
        run = session.exec(select(JobRun).where(JobRun.job == "draft-summaries")).one()
        assert run.outcome == "drafted" and run.message.startswith("drafted 2, 1 failed")
        assert session.exec(select(Issue)).one().month == MONTH  # composed all the same


def test_cli_papers_draft_prints_counts_and_tokens_and_asks_nothing_twice(
    papers: Engine, fake: FakeLLM, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_LLM_BASE_URL", fake.base_url)
    monkeypatch.setenv("NEWSLETTER_LLM_MODEL", "fake-model-1")
    off = cli("papers", "draft", "--month", MONTH)
    assert off.exit_code == 1 and "NEWSLETTER_LLM_SUMMARIES is off" in off.output
    assert fake.connections == 0

    from newsletter.settings import get_settings

    monkeypatch.setenv("NEWSLETTER_LLM_SUMMARIES", "review")
    get_settings.cache_clear()
    first = cli("papers", "draft", "--month", MONTH)
    assert first.exit_code == 0, first.output
    assert "drafted 3, 0 failed (fake-model-1, review mode)" in first.output
    used = sum(d.prompt_tokens + d.completion_tokens for d in drafts(papers).values())
    assert f"; {used:,} tokens (" in first.output
    again = cli("papers", "draft", "--month", MONTH)
    assert "drafted 0, 0 failed, 3 already drafted" in again.output and len(fake.requests) == 3
    redraft = cli("papers", "draft", "--month", MONTH, "--redraft")
    assert "drafted 3" in redraft.output and len(fake.requests) == 6
    with Session(papers) as session:
        runs = session.exec(select(JobRun).where(JobRun.job == "draft-summaries")).all()
        assert [r.outcome for r in runs] == ["drafted"] * 3
    bad = cli("papers", "draft", "--month", "2026-13")
    assert bad.exit_code == 2


def test_the_editors_test_copy_lists_what_is_unreviewed(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    from newsletter import approval
    from tests.test_desk import EDITOR, desk_settings, mails

    review = desk_settings(
        settings, llm_summaries="review", llm_base_url=fake.base_url, llm_model="fake-model-1"
    )
    draft_papers(papers, review, month=MONTH)
    compose(papers)
    approval.send_test(papers, review, MONTH, EDITOR, EDITOR)
    copy = mails(review)[-1]
    text = copy.get_body(preferencelist=("plain",)).get_content()
    html = copy.get_body(preferencelist=("html",)).get_content()
    assert text.startswith("Editors only: 3 summaries drafted by a language model not reviewed")
    assert f"- {NATGRAD} (drafted by fake-model-1; abstract shown)" in text
    assert 'role="note"' in html and "Operator Splitting for Stiff Systems (drafted by" in html
    ids = [paper(papers, title).id for title in (NATGRAD, SPLITTING, BENCHMARKS)]
    with Session(papers) as session:
        for paper_id in ids:
            accept_draft(session, MONTH, paper_id, EDITOR)  # type: ignore[arg-type]
        session.commit()
    approval.send_test(papers, review, MONTH, EDITOR, EDITOR)
    copy = mails(review)[-1]
    assert "Editors only" not in copy.get_body(preferencelist=("plain",)).get_content()
    assert 'role="note"' not in copy.get_body(preferencelist=("html",)).get_content()


def test_desk_marks_drafts_and_accepts_edits_and_redrafts_them(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app
    from tests.test_desk import EDITOR, csrf_of, desk_settings, sign_in

    review = desk_settings(
        settings, llm_summaries="review", llm_base_url=fake.base_url, llm_model="fake-model-1"
    )
    fake.topics = ["learning-theory"]
    draft_papers(papers, review, month=MONTH)
    compose(papers)
    ids = {t: paper(papers, t).id for t in (NATGRAD, SPLITTING, BENCHMARKS)}
    client = TestClient(create_app(review), follow_redirects=False)
    csrf = sign_in(client)
    page = client.get(f"/admin/issues/{MONTH}").text
    assert page.count("drafted by fake-model-1 — not reviewed") == 3
    assert "3 drafted summaries not reviewed" in page
    assert (
        "Model's topics: Learning theory &amp; generalization · the paper's topics now "
        "(keyword tagger or an editor): Optimization"
    ) in page
    assert len(fake.requests) == 3  # reading the page asks nothing

    base = f"/admin/issues/{MONTH}/papers"
    no_csrf = client.post(f"{base}/{ids[NATGRAD]}/draft/accept", data={})
    assert no_csrf.status_code == 403
    accepted = client.post(f"{base}/{ids[NATGRAD]}/draft/accept", data={"csrf_token": csrf})
    assert accepted.status_code == 303
    assert paper(papers, NATGRAD).summary == house_style_summary(NATGRAD)
    edited = client.post(
        f"{base}/{ids[SPLITTING]}/draft/accept",
        data={"csrf_token": csrf, "summary": "Splits stiff systems; solvers get faster."},
    )
    assert edited.status_code == 303
    assert paper(papers, SPLITTING).summary == "Splits stiff systems; solvers get faster."
    again = client.post(f"{base}/{ids[NATGRAD]}/draft/accept", data={"csrf_token": csrf})
    assert again.status_code == 400 and "no unreviewed draft" in again.text

    fake.script(BENCHMARKS, "ok:0.3")
    redrafted = client.post(f"{base}/{ids[BENCHMARKS]}/draft/redraft", data={"csrf_token": csrf})
    assert redrafted.status_code == 303 and fake.requests_for(BENCHMARKS) == 2
    assert drafts(papers)[BENCHMARKS].relevance == pytest.approx(0.3)
    page = client.get(f"/admin/issues/{MONTH}").text
    assert page.count("— not reviewed") == 1 and "1 drafted summary not reviewed" in page
    with Session(papers) as session:
        audit = [e.detail for e in session.exec(select(_audit_entry())).all()]
    assert any("draft by fake-model-1 edited and accepted" in d for d in audit)

    off = TestClient(create_app(desk_settings(settings)), follow_redirects=False)
    csrf = sign_in(off)
    refused = off.post(f"{base}/{ids[BENCHMARKS]}/draft/redraft", data={"csrf_token": csrf})
    assert refused.status_code == 400 and "drafting is off" in refused.text
    assert fake.requests_for(BENCHMARKS) == 2
    assert "Redraft</button>" not in off.get(f"/admin/issues/{MONTH}").text
    assert EDITOR and csrf_of


def _audit_entry():  # type: ignore[no-untyped-def]
    from newsletter.models import AuditEntry

    return AuditEntry


def test_papers_of_an_issue_that_went_out_are_never_sent_to_the_model(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    compose(papers)
    with Session(papers) as session:
        issue = session.exec(select(Issue)).one()
        issue.status = IssueStatus.SENT
        session.add(issue)
        session.commit()
    report = draft_papers(papers, llm(settings, fake, "auto"), month=MONTH)
    assert (report.drafted, report.gone_out, fake.requests) == (0, 3, [])
    assert paper(papers, NATGRAD).summary == paper(papers, NATGRAD).abstract


def test_a_server_without_structured_output_gets_json_mode_and_is_still_checked(
    papers: Engine, settings: Settings
) -> None:
    with FakeLLM(structured=False) as plain:
        plain.script(NATGRAD, "html", "html")
        report = draft_papers(papers, llm(settings, plain), month=MONTH)
    assert (report.drafted, report.failed) == (2, 1)
    assert {b["response_format"]["type"] for b in plain.requests} == {"json_object"}


def test_switching_modes_moves_earlier_drafts_out_of_and_into_the_email(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    compose(papers)
    draft_papers(papers, llm(settings, fake, "auto"), month=MONTH)
    review = llm(settings, fake, "review")
    assert house_style_summary(NATGRAD)[:60] in email_html(papers, review)
    switched = draft_papers(papers, review, month=MONTH)  # review now: out of the email
    assert (switched.switched, switched.cached, len(fake.requests)) == (3, 3, 3)
    assert house_style_summary(NATGRAD)[:60] not in email_html(papers, review)
    assert drafts(papers)[NATGRAD].status == DraftStatus.DRAFTED
    back = draft_papers(papers, llm(settings, fake, "auto"), month=MONTH)
    assert (back.switched, len(fake.requests)) == (3, 3)
    assert house_style_summary(NATGRAD)[:60] in email_html(papers, review)


def test_nothing_about_a_subscriber_is_sent(
    papers: Engine, settings: Settings, fake: FakeLLM
) -> None:
    import json

    from subscribers import lifecycle

    with Session(papers) as session:
        lifecycle.add_confirmed(
            session,
            "reader.secret@example.org",
            ["optimization"],
            known_topics={"optimization"},
            consent_text_version="test",
            source="cli",
        )
        session.commit()
    compose(papers)
    draft_papers(papers, llm(settings, fake), month=MONTH)
    sent = json.dumps(fake.requests)
    assert len(fake.requests) == 3 and "reader.secret" not in sent
    natgrad = paper(papers, NATGRAD)
    user = [m for b in fake.requests for m in b["messages"] if m["role"] == "user"]
    assert any(" ".join(natgrad.abstract.split()) in m["content"] for m in user)
    assert {m["role"] for b in fake.requests for m in b["messages"]} == {"system", "user"}
