"""Importing papers on SQLite and PostgreSQL: every format, de-duplication, updates, and
malformed files that fail whole while the other files of the same call still import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.models import Paper, PaperTopic
from newsletter.papers.links import paper_link
from newsletter.papers.store import FileImportReport, import_paths
from newsletter.settings import DEFAULT_PAPER_SEARCH_URL

DATA = Path(__file__).parent / "data" / "papers"
SAMPLE = Path(__file__).parent.parent / "newsletter" / "data" / "sample_papers.yaml"
LISTING = DATA / "whats-new-listing.txt"
ARXIV = DATA / "arxiv_api_answer.xml"

PAPERS = [
    {
        "title": "Adam with Warm Restarts, Revisited",
        "summary": "Restarts help Adam when the learning rate schedule is long.",
        "url": "https://example.org/papers/adam-restarts",
        "published": "2026-04-12",
        "authors": ["Ann One", "Bo Two"],
        "arxiv_id": "arXiv:2604.00001v3",
        "doi": "https://doi.org/10.1000/ABC.123",
    },
    {
        "title": "Counting Paths in Graphs",
        "summary": "A plain-language summary.",
        "url": "https://example.org/papers/paths",
        "published": "2026-04",
        "authors": "Cy Three, Di Four",
        "topics": ["graph-learning", "learning-theory"],
        "abstract": "We count paths.",
    },
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def as_csv(papers: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    cols = ["title", "summary", "url", "published", "authors", "topics", "arxiv_id", "doi"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    for p in papers:
        row = dict(p)
        for key in ("authors", "topics"):
            if isinstance(row.get(key), list):
                row[key] = (", " if key == "authors" else ";").join(row[key])
        writer.writerow(row)
    return buf.getvalue()


def as_yaml(papers: list[dict]) -> str:
    import yaml

    return yaml.safe_dump({"papers": papers}, allow_unicode=True)


def one(reports: list[FileImportReport]) -> FileImportReport:
    (report,) = reports
    assert report.error is None, report.error
    return report


def papers_by_title(engine: Engine) -> dict[str, tuple[Paper, list[str]]]:
    with Session(engine) as s:
        out = {}
        for p in s.exec(select(Paper)).all():
            topics = s.exec(select(PaperTopic.topic_slug).where(PaperTopic.paper_id == p.id))
            out[p.title] = (p, sorted(topics.all()))
        return out


def count_papers(engine: Engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(Paper.id)).all())


@pytest.mark.parametrize(
    ("name", "render"),
    [("p.json", json.dumps), ("p.yaml", as_yaml), ("p.csv", as_csv), ("papers", json.dumps)],
)
def test_file_formats_import_the_same_papers(engine: Engine, tmp_path: Path, name, render) -> None:
    report = one(import_paths(engine, [write(tmp_path, name, render(PAPERS))]))
    assert (report.added, report.updated, report.skipped) == (2, 0, 0)
    stored = papers_by_title(engine)
    adam, adam_topics = stored["Adam with Warm Restarts, Revisited"]
    assert adam.arxiv_id == "2604.00001" and adam.doi == "10.1000/abc.123"
    assert adam.authors == ["Ann One", "Bo Two"] and str(adam.published) == "2026-04-12"
    assert adam.month == "2026-04" and adam_topics == ["optimization"]  # "adam", "learning rate"
    paths, paths_topics = stored["Counting Paths in Graphs"]
    assert paths.authors == ["Cy Three", "Di Four"] and str(paths.published) == "2026-04-01"
    assert paths_topics == ["graph-learning", "learning-theory"]  # explicit topics win
    again = one(import_paths(engine, [tmp_path / name]))
    assert (again.added, again.updated, again.skipped) == (0, 0, 2) and not again.changed


def test_seed_listing_gives_its_eight_papers_and_reimports_as_noop(engine: Engine) -> None:
    report = one(import_paths(engine, [LISTING]))
    assert (report.format, report.added, report.untagged) == ("listing", 8, [])
    stored = papers_by_title(engine)
    assert stored["Thermodynamic natural gradient descent"][1] == ["optimization"]
    assert stored["Deep neural operator for free boundary problems"][1] == ["scientific-ml"]
    hyper = next(v for k, v in stored.items() if k.startswith("Hypergraph"))
    assert hyper[1] == ["graph-learning"]
    assert sorted(p.month for p, _ in stored.values()) == ["2026-04"] * 5 + ["2026-05"] * 2 + [
        "2026-06"
    ]
    assert all(p.url == "" for p, _ in stored.values())
    for path in (LISTING, SAMPLE):  # the curated sample file is the same eight papers
        again = one(import_paths(engine, [path]))
        assert (again.added, again.updated, again.skipped) == (0, 0, 8)


def test_sample_file_imports_cleanly(engine: Engine) -> None:
    report = one(import_paths(engine, [SAMPLE]))
    assert (report.format, report.added) == ("yaml", 8)
    paper, _ = papers_by_title(engine)["Prism: Symbolic Superoptimization of Tensor Programs"]
    link = paper_link(paper, DEFAULT_PAPER_SEARCH_URL)
    assert link.startswith("https://arxiv.org/search/?query=%22Prism%3A+Symbolic")


def test_arxiv_api_answer(engine: Engine) -> None:
    report = one(import_paths(engine, [ARXIV]))
    assert (report.format, report.added) == ("feed", 3)
    assert report.untagged == ["A Note on Benchmarks"]
    stored = papers_by_title(engine)
    tng, topics = stored["Thermodynamic Natural Gradient Descent"]  # title spread over 2 lines
    assert tng.arxiv_id == "2606.01234" and tng.doi == "10.48550/arxiv.2606.01234"
    assert tng.url == "https://arxiv.org/abs/2606.01234" and str(tng.published) == "2026-06-03"
    assert tng.authors == ["Ada Example", "Brook Sample"] and topics == ["optimization"]
    assert tng.summary.startswith("We introduce") and tng.abstract == tng.summary
    assert stored["Operator Splitting for Stiff Systems"][1] == ["scientific-ml"]  # math.NA
    assert stored["A Note on Benchmarks"][1] == ["general"]


def test_listing_paper_gets_its_url_later_and_keeps_curated_text(engine: Engine) -> None:
    one(import_paths(engine, [LISTING]))
    report = one(import_paths(engine, [ARXIV]))
    assert (report.added, report.updated) == (2, 1)
    paper, _ = papers_by_title(engine)["Thermodynamic natural gradient descent"]
    assert paper.url == "https://arxiv.org/abs/2606.01234" and paper.arxiv_id == "2606.01234"
    assert paper.summary.startswith("introduces a natural gradient")  # abstract never overrides
    assert paper.abstract.startswith("We introduce") and str(paper.published) == "2026-06-03"
    assert paper.authors == ["Ada Example", "Brook Sample"]
    assert paper_link(paper, DEFAULT_PAPER_SEARCH_URL) == paper.url
    for path in (LISTING, ARXIV):  # neither source undoes the other: both re-import as no-ops
        assert not one(import_paths(engine, [path])).changed


def test_url_arriving_in_a_json_file_updates_a_listing_paper(engine: Engine, tmp_path) -> None:
    one(import_paths(engine, [LISTING]))
    update = [
        {
            "title": "Deep Neural Operator for Free-Boundary Problems",  # same normalised title?
            "summary": "Better summary.",
            "url": "https://example.org/dno",
            "published": "2026-05",
        }
    ]
    report = one(import_paths(engine, [write(tmp_path, "u.json", json.dumps(update))]))
    # "free-boundary" normalises to "free boundary": the same paper
    assert (report.added, report.updated) == (0, 1)
    paper, _ = papers_by_title(engine)["Deep neural operator for free boundary problems"]
    assert (paper.url, paper.summary) == ("https://example.org/dno", "Better summary.")


def test_deduplication_by_arxiv_id_doi_and_title(engine: Engine, tmp_path: Path) -> None:
    one(import_paths(engine, [write(tmp_path, "a.json", json.dumps(PAPERS))]))
    later = [
        {  # same arXiv id, other version and URL form, new title: the same paper, renamed
            "title": "Adam Restarts Revisited (v3)",
            "summary": PAPERS[0]["summary"],
            "url": PAPERS[0]["url"],
            "published": "2026-04-12",
            "arxiv_id": "https://arxiv.org/abs/2604.00001v1",
        },
        {  # same title up to case and punctuation
            "title": "counting paths in graphs!",
            "summary": "A plain-language summary.",
            "url": "https://example.org/papers/paths",
            "published": "2026-04",
        },
        {  # same DOI in another spelling
            "title": "Totally Different",
            "summary": "s",
            "url": "https://example.org/x",
            "published": "2026-04",
            "doi": "doi:10.1000/abc.123",
            "arxiv_id": "2604.00001",
        },
    ]
    report = one(import_paths(engine, [write(tmp_path, "b.json", json.dumps(later[:2]))]))
    assert (report.added, report.updated, report.skipped) == (0, 1, 1)
    assert count_papers(engine) == 2
    assert "Adam Restarts Revisited (v3)" in papers_by_title(engine)
    clash = import_paths(engine, [write(tmp_path, "c.json", json.dumps(later[2:]))])[0]
    assert clash.error is None and (clash.updated, clash.added) == (1, 0)
    assert count_papers(engine) == 2


def test_updated_summary_updates_the_paper(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "a.json", json.dumps(PAPERS))
    one(import_paths(engine, [path]))
    changed = [dict(PAPERS[0], summary="A clearer summary."), PAPERS[1]]
    report = one(import_paths(engine, [write(tmp_path, "a2.json", json.dumps(changed))]))
    assert (report.added, report.updated, report.skipped) == (0, 1, 1)
    paper, _ = papers_by_title(engine)["Adam with Warm Restarts, Revisited"]
    assert paper.summary == "A clearer summary." and paper.updated_at >= paper.created_at


def test_same_paper_twice_in_one_file_is_one_paper(engine: Engine, tmp_path: Path) -> None:
    twice = [PAPERS[0], dict(PAPERS[0], summary="Later wins.", doi=None)]
    report = one(import_paths(engine, [write(tmp_path, "t.json", json.dumps(twice))]))
    assert (report.added, report.skipped) == (1, 1)
    paper, _ = papers_by_title(engine)["Adam with Warm Restarts, Revisited"]
    assert paper.summary == "Later wins." and paper.doi == "10.1000/abc.123"


def test_html_and_script_in_titles_are_stored_as_text(engine: Engine, tmp_path: Path) -> None:
    title = 'Beyond <script>alert("x")</script> & $O(n^2)$ <b>bounds</b>'
    papers = [dict(PAPERS[1], title=title, summary="<i>not</i> markup")]
    one(import_paths(engine, [write(tmp_path, "h.json", json.dumps(papers))]))
    paper, _ = papers_by_title(engine)[title]
    assert paper.title == title and paper.summary == "<i>not</i> markup"


def test_rss_feed_with_html_description(engine: Engine, tmp_path: Path) -> None:
    rss = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Lab news</title><link>https://lab.example.org/</link>
<description>papers</description>
<item><title>Message Passing &amp; Oversmoothing</title>
<link>https://lab.example.org/p/1</link>
<description>&lt;p&gt;We study &lt;b&gt;oversmoothing&lt;/b&gt; in
message passing.&lt;/p&gt;</description>
<pubDate>Tue, 14 Apr 2026 10:00:00 GMT</pubDate></item>
</channel></rss>"""
    report = one(import_paths(engine, [write(tmp_path, "lab.rss", rss)]))
    assert (report.format, report.added) == ("feed", 1)
    paper, topics = papers_by_title(engine)["Message Passing & Oversmoothing"]
    assert paper.summary == "We study oversmoothing in message passing."
    assert (paper.url, str(paper.published), topics) == (
        "https://lab.example.org/p/1",
        "2026-04-14",
        ["graph-learning"],
    )


ATOM_NO_DATE = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:x</id>
<entry><title>Dated</title><id>urn:1</id><updated>2026-04-02T00:00:00Z</updated>
<link href="https://example.org/1"/><summary>ok</summary></entry>
<entry><title>Undated</title><id>urn:2</id><link href="https://example.org/2"/>
<summary>no date here</summary></entry></feed>"""

GOOD_JSON = json.dumps(PAPERS)
MALFORMED = [
    ("truncated.json", GOOD_JSON[: len(GOOD_JSON) // 2], None, None, "not valid JSON"),
    (
        "missing-column.csv",
        "title,url,published\nA,https://e.org,2026-04\n",
        None,
        "summary",
        "lacks column",
    ),
    ("short-row.csv", "title,summary,published\nA,s,2026-04\nB,s\n", 2, "published", "missing"),
    ("broken.xml", ATOM_NO_DATE[:300], None, None, "not well-formed XML"),
    (
        "huge.json",
        json.dumps([PAPERS[0], dict(PAPERS[1], summary="x" * 1_048_576)]),
        2,
        "summary",
        "1,048,576 characters long; the limit is 5,000",
    ),
    ("latin1.json", GOOD_JSON.replace("Adam", "Ädam").encode("latin-1"), None, None, "UTF-8"),
    (
        "latin1-in-utf8.xml",
        ARXIV.read_bytes().replace(b"Ada Example", b"Ad\xe9 Example"),
        None,
        None,
        "do not match its declared encoding",
    ),
    ("latin1.txt", LISTING.read_text().encode("utf-8") + b"\n\xe9t\xe9\n", None, None, "UTF-8"),
    (
        "topic.yaml",
        as_yaml([dict(PAPERS[1], topics=["graph-learning", "astrology"])]),
        1,
        "topics",
        "unknown topic slug(s) astrology",
    ),
    ("date.json", json.dumps([dict(PAPERS[0], published="12/04/2026")]), 1, "published", "YYYY"),
    ("url.json", json.dumps([dict(PAPERS[0], url="javascript:alert(1)")]), 1, "url", "http(s)"),
    ("notitle.json", json.dumps([PAPERS[0], dict(PAPERS[1], title=" ")]), 2, "title", "required"),
    ("arxiv.json", json.dumps([dict(PAPERS[0], arxiv_id="not-an-id")]), 1, "arxiv_id", "arXiv"),
    ("empty.json", "[]", None, None, "holds no papers"),
    ("bad.yaml", "papers:\n  - title: [unclosed\n", None, None, "not valid YAML"),
    ("object.json", '{"title": "one paper, not a list"}', None, None, "must hold a list"),
    ("nothing.bin", "\x00\x01 binary?", None, None, "cannot tell the format"),
    ("scalar.json", '["just a string"]', 1, None, "must be an object"),
]


@pytest.mark.parametrize(("name", "content", "record", "field", "message"), MALFORMED)
def test_malformed_file_fails_whole_and_others_still_import(
    engine: Engine, tmp_path: Path, name, content, record, field, message
) -> None:
    bad = write(tmp_path, name, content)
    good = write(tmp_path, "good.yaml", as_yaml([PAPERS[1]]))
    bad_report, good_report = import_paths(engine, [bad, good])
    error = bad_report.error
    assert error is not None and not bad_report.ok
    assert error.file == str(bad) and error.record == record and error.field == field
    assert message in str(error) and name in str(error)
    assert good_report.ok and good_report.added == 1
    assert count_papers(engine) == 1  # nothing of the bad file was kept


def test_format_detected_from_content_without_extension(engine: Engine, tmp_path: Path) -> None:
    listing = write(tmp_path, "whats-new", LISTING.read_bytes())
    answer = write(tmp_path, "answer", ARXIV.read_bytes())
    rows = write(tmp_path, "rows", as_csv(PAPERS))
    reports = import_paths(engine, [listing, answer, rows])
    assert [(r.format, r.error) for r in reports] == [
        ("listing", None),
        ("feed", None),
        ("csv", None),
    ]
    no_link = ATOM_NO_DATE.split("<entry><title>Undated")[0] + "</feed>"
    forced = write(
        tmp_path, "notes.txt", no_link.replace('<link href="https://example.org/1"/>', "")
    )
    (report,) = import_paths(engine, [forced], "feed")  # --format wins over the extension
    assert report.error is None and report.format == "feed"
    assert papers_by_title(engine)["Dated"][0].url == ""  # urn: id only: a title search


def test_feed_external_entities_are_not_read(engine: Engine, tmp_path: Path) -> None:
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY x SYSTEM "file://{DATA / "arxiv_error.xml"}">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<entry><title>Leak &x;</title><id>urn:1</id><updated>2026-04-01T00:00:00Z</updated>
<summary>s</summary></entry></feed>"""
    (report,) = import_paths(engine, [write(tmp_path, "xxe.atom", xxe)])
    assert report.error is not None and "not well-formed XML" in str(report.error)
    assert "arXiv api core" not in str(report.error) and count_papers(engine) == 0


def test_a_bad_record_late_in_a_file_keeps_nothing_of_it(engine: Engine, tmp_path: Path) -> None:
    many = [dict(PAPERS[1], title=f"Paper number {i}") for i in range(50)]
    many.append(dict(PAPERS[1], title="Broken", published="someday"))
    (report,) = import_paths(engine, [write(tmp_path, "many.json", json.dumps(many))])
    assert report.error is not None and report.error.record == 51
    assert count_papers(engine) == 0


def test_cli_import_reports_each_file_and_exits_1_on_a_bad_one(cli, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", '[{"title": "x"')
    result = cli("papers", "import", str(bad), str(SAMPLE))
    assert result.exit_code == 1
    assert "bad.json" in result.output and "not valid JSON" in result.output
    assert "8 added, 0 updated, 0 unchanged" in result.output
    again = cli("papers", "import", str(SAMPLE))
    assert again.exit_code == 0 and "nothing changed (8 papers already up to date)" in again.output
    feed = cli("papers", "import", "--format", "feed", str(ARXIV))
    assert feed.exit_code == 0 and "went to 'general': A Note on Benchmarks" in feed.output
    assert cli("papers", "import", "--format", "pdf", str(SAMPLE)).exit_code == 2


def test_cli_list_shows_topics(cli) -> None:
    assert cli("papers", "import", str(SAMPLE)).exit_code == 0
    result = cli("papers", "list", "--month", "2026-05")
    assert result.exit_code == 0 and "2 papers of 2026-05" in result.output
    assert "scientific-ml" in result.output and "Hypergraph" not in result.output
    assert cli("papers", "list", "--month", "May").exit_code == 2


def test_concurrent_imports_of_the_same_papers_both_succeed(engine: Engine, tmp_path: Path) -> None:
    import threading

    many = [dict(PAPERS[1], title=f"Concurrent paper {i}") for i in range(300)]
    paths = [write(tmp_path, f"c{n}.json", json.dumps(many)) for n in range(3)]
    reports: list[FileImportReport] = []
    barrier = threading.Barrier(len(paths))

    def run(path: Path) -> None:
        barrier.wait()
        reports.extend(import_paths(engine, [path]))

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.error for r in reports] == [None, None, None]
    assert sum(r.added for r in reports) == 300 and count_papers(engine) == 300


def test_confidence_is_stored_and_papers_list_flags_doubtful_ones(cli, tmp_path: Path) -> None:
    rows = [
        {"title": "Adam restarts", "summary": "Learning rate schedules.", "published": "2026-04"},
        {"title": "Lab picnic", "summary": "Sandwiches.", "published": "2026-04"},
        {"title": "Given topics", "summary": "x", "published": "2026-04", "topics": ["general"]},
    ]
    path = write(tmp_path, "c.json", json.dumps(rows))
    assert cli("papers", "import", str(path)).exit_code == 0
    listing = " ".join(cli("papers", "list").output.split())
    assert "1.00" in listing and "given" in listing
    assert "1 paper flagged (General or a close call)" in listing
    flagged = " ".join(cli("papers", "list", "--flagged").output.split())
    assert "Lab picnic" in flagged and "general" in flagged
    assert "Adam" not in flagged and "Given topics" not in flagged
    # The same file again changes nothing, confidence included.
    again = cli("papers", "import", str(path)).output
    assert "nothing changed (3 papers already up to date)" in again
