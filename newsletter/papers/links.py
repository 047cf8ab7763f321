"""Where a paper's link points: its URL, or a search for its exact title until one arrives."""

from __future__ import annotations

from urllib.parse import quote_plus

from newsletter.models import Paper


def paper_link(paper: Paper, search_url_template: str) -> str:
    if paper.url:
        return paper.url
    return search_url_template.replace("{query}", quote_plus(f'"{paper.title}"'))
