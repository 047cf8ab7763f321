"""What the email says about a paper: its plain-language summary, or the abstract's opening.

Feeds and the arXiv API bring no plain-language summary, so their abstract stands in for
one (`summary == abstract`). A full abstract makes a long, dense email; the opening
sentences that fit in 300 characters say what the paper is about, and the link has the rest.
"""

from __future__ import annotations

import re

EXCERPT_LIMIT = 300
ELLIPSIS = "…"
# A sentence ends at . ! or ? (maybe closed by a quote or bracket) before a space and a
# capital, digit, quote or bracket: "e.g. the" never ends one, "et al. Then" is checked below.
_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    [
        "al",
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "fig",
        "figs",
        "eq",
        "eqs",
        "sec",
        "ref",
        "refs",
        "resp",
        "approx",
        "dr",
        "prof",
        "no",
        "nos",
        "ch",
    ]
)


def _ends_sentence(text: str, end: int) -> bool:
    """False when the full stop belongs to an abbreviation or an initial (`J. Smith`)."""
    before = text[:end].rstrip("\"'”’)]").rstrip(".!?")
    word = before.rsplit(" ", 1)[-1].lower()
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def abstract_excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """The first sentences of `text` that fit in `limit` characters, cut at a sentence end.

    A first sentence longer than the limit is cut at a word boundary and ends with `…`
    (still within the limit); a word is never cut in two.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    fitting = [
        m.end()
        for m in _END.finditer(text[: limit + 2])  # +2: room to see what follows the stop
        if m.end() <= limit and _ends_sentence(text, m.end())
    ]
    if fitting:
        return text[: fitting[-1]]
    cut = text.rfind(" ", 0, limit - len(ELLIPSIS) + 1)
    head = text[:cut] if cut > 0 else text[: limit - len(ELLIPSIS)]
    return head.rstrip(" ,;:-–—") + ELLIPSIS


def email_summary(summary: str, abstract: str) -> str:
    """The plain-language summary when a person wrote one; else the abstract's opening."""
    summary, abstract = summary.strip(), abstract.strip()
    if summary and " ".join(summary.split()) != " ".join(abstract.split()):
        return summary
    return abstract_excerpt(abstract or summary)
