"""A sample issue written straight into the tables, for rendering tests, previews and the
render benchmark, so they need neither the importer nor `compose` to exist.

Titles and summaries come from the seed listing, plus deliberately awkward ones (markup
characters, quotes, LaTeX, emoji, right-to-left text), one late arrival, one paper without
a URL and one paper tagged with two topics.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from newsletter.models import Issue, IssuePaper, Paper, PaperTopic, Topic

SEED_PAPERS: list[tuple[str, str, list[str], str]] = [
    (
        "Thermodynamic natural gradient descent",
        "Introduces a natural gradient optimizer that regulates step sizes using a physical "
        "speed-cost constraint. Practitioners can apply this to improve optimization "
        "stability and efficiency, especially where computational cost matters.",
        [],
        "optimization",
    ),
    (
        "Deep neural operator for free boundary problems",
        "Extends neural operators to solve partial differential equations on unknown "
        "domains, so practitioners can tackle phase transitions and moving boundaries with "
        "learned operators.",
        [],
        "scientific-ml",
    ),
    (
        "Exact sequence interpolation with transformers",
        "Proves that transformers can exactly memorize and interpolate finite sequence "
        "datasets, which helps practitioners reason about model capacity for sequence tasks.",
        [],
        "transformers",
    ),
    (
        "Sheaf Diffusion with Adaptive Local Structure for Spatio-Temporal Forecasting",
        "Combines sheaf theory with diffusion models to handle heterogeneous spatio-temporal "
        "systems; useful for forecasting weather, traffic and other spatial phenomena.",
        ["Abeer Mostafa", "Raneen Younis", "Zahra Ahmadi"],
        "spatio-temporal",
    ),
    (
        "Hypergraph Neural Diffusion: A PDE-Inspired Framework for Hypergraph Message Passing",
        "Applies PDE-inspired diffusion to message passing on hypergraphs, improving how "
        "information propagates through higher-order structures.",
        ["Zhiheng Zhou", "Mengyao Zhou", "Xixun Lin", "A. Author", "B. Author"],
        "graph-learning",
    ),
    (
        "There Will Be a Scientific Theory of Deep Learning",
        "Argues for and sketches a path toward a principled scientific understanding of deep "
        "learning, giving clearer intuitions about which design choices matter and why.",
        ["Jamie Simon", "Daniel Kunin", "Alexander Atanasov"] + [f"Coauthor {i}" for i in range(9)],
        "learning-theory",
    ),
    (
        "Prism: Symbolic Superoptimization of Tensor Programs",
        "Uses symbolic reasoning to optimize tensor programs automatically, finding faster "
        "implementations than hand-tuned code and cutting training and inference latency.",
        ["Mengdi Wu", "Xiaoyu Jiang", "Oded Padon"],
        "ml-systems",
    ),
]

AWKWARD_PAPERS: list[tuple[str, str, list[str], str]] = [
    (
        "Attention is <b>not</b> all you need & \"quotes\" 'too'",
        "A summary with <script>alert(1)</script>, an ampersand & and a fake tag <i>here</i>.",
        ["O'Brien, Jr.", "Zoë Ünicode"],
        "transformers",
    ),
    (
        "Gradient descent in $O(n^2)$ time 🚀",
        "Shows $\\mathcal{O}(n \\log n)$ bounds for ${x}$ and {{ not_jinja }} {% raw %} 🎉.",
        ["Ada Lovelace"],
        "optimization",
    ),
    (
        "שיטות אופטימיזציה לרשתות עמוקות",
        "סיכום בעברית: right-to-left text mixed with English words and numbers 123.",
        ["דנה כהן"],
        "general",
    ),
]


def build_sample_issue(
    session: Session,
    month: str = "2026-05",
    *,
    papers: int = 12,
    subject: str = "",
    summary_chars: int = 0,
) -> Issue:
    """Insert an issue of `papers` papers (seed and awkward ones first, then filler spread
    over every topic) and return it. Topics must already be synced (`newsletter init`).

    `summary_chars` pads every summary to that length (abstract-length months)."""
    topics = [t.slug for t in session.exec(select(Topic).order_by(Topic.position)).all()]
    if not topics:
        raise RuntimeError("no topics: sync the taxonomy first")
    year, mon = (int(x) for x in month.split("-"))
    specs = (SEED_PAPERS + AWKWARD_PAPERS)[:papers]
    for i in range(len(specs), papers):
        slug = topics[i % len(topics)]
        specs.append(
            (
                f"Filler paper {i + 1} on {slug.replace('-', ' ')}",
                f"Plain-language summary of filler paper {i + 1}: what it finds and why a "
                "practitioner might care. " * 3,
                [f"Author {i}a", f"Author {i}b"],
                slug,
            )
        )
    issue = Issue(month=month, subject=subject)
    session.add(issue)
    session.flush()
    positions: dict[str, int] = {}
    for i, (title, summary, authors, slug) in enumerate(specs):
        if summary_chars:
            filler = " It also reports ablations, limitations and what to try next."
            summary = (summary + filler * (summary_chars // len(filler) + 1))[:summary_chars]
        late = i == 1  # the second paper arrived after its own month's issue
        published = date(year - 1, 12, 15) if late else date(year, mon, 1 + i % 27)
        paper = Paper(
            title=title,
            normalized_title=f"{month}-{i}-{title.lower()}",
            summary=summary,
            url="" if i == 2 else f"https://arxiv.org/abs/{year % 100:02d}{mon:02d}.{i:05d}",
            authors=authors,
            published=published,
            month=published.strftime("%Y-%m"),
        )
        session.add(paper)
        session.flush()
        session.add(PaperTopic(paper_id=paper.id, topic_slug=slug))
        if i == 3:  # the spatio-temporal sheaf paper is graph learning too
            session.add(PaperTopic(paper_id=paper.id, topic_slug="graph-learning"))
        position = positions.get(slug, 0)
        positions[slug] = position + 1
        session.add(
            IssuePaper(
                issue_id=issue.id, paper_id=paper.id, topic_slug=slug, position=position, late=late
            )
        )
    session.commit()
    return issue
