"""The sources file (`NEWSLETTER_SOURCES`, default `./sources.yaml`): where a month's papers
come from, checked up front so a typo fails with file, entry and field, never mid-fetch.

    sources:
      - name: arxiv-foundations
        type: arxiv                  # the arXiv API, one request per 3 s, paged
        categories: [cs.LG, stat.ML]
        query: 'abs:"neural operator"'   # optional, ANDed with the categories
      - name: lab-blog
        type: feed                   # an Atom or RSS URL
        url: https://example.org/papers.atom
      - name: inbox
        type: directory              # new files of any supported format, then moved aside
        path: inbox                  # relative to this file
    # every entry may also give: topics (hints), include / exclude (keywords)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from newsletter.errors import NewsletterError
from newsletter.papers import bounded_yaml
from newsletter.papers.tagging import TopicRule, keyword_hits, text_words
from newsletter.papers.validation import PaperRecord

SOURCE_TYPES = ("arxiv", "feed", "directory")
_CATEGORY = r"^[a-z-]+(\.[A-Za-z-]+)?$"  # cs.LG, stat.ML, math.OC, hep-th, q-bio.NC


class SourcesFileError(NewsletterError):
    """The sources file cannot be used; the message names the file, entry and field."""


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(default="", max_length=100)
    topics: list[str] = Field(default_factory=list)  # hints: for papers no keyword places
    include: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    exclude: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds per HTTP request


class ArxivSource(_Source):
    type: Literal["arxiv"]
    categories: list[Annotated[str, Field(pattern=_CATEGORY)]] = Field(min_length=1)
    query: str = ""
    max_results: int = Field(default=2000, ge=1, le=30000)
    page_size: int = Field(default=200, ge=1, le=2000)


class FeedSource(_Source):
    type: Literal["feed"]
    url: str

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or " " in value:
            raise ValueError(f"must be an http(s) URL (got {value!r})")
        return value


class DirectorySource(_Source):
    type: Literal["directory"]
    path: Path
    move_to: Path | None = None  # where imported files go; default `<path>/imported`


Source = ArxivSource | FeedSource | DirectorySource


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Annotated[Source, Field(discriminator="type")]] = Field(min_length=1)


@dataclass(frozen=True)
class Filters:
    """A source's include/exclude keywords, matched as whole words like topic keywords."""

    include: TopicRule | None
    exclude: TopicRule | None

    @classmethod
    def of(cls, source: _Source) -> Filters:
        def rule(words: list[str]) -> TopicRule | None:
            return TopicRule.build("filter", 0, words, ()) if words else None

        return cls(rule(source.include), rule(source.exclude))

    def keeps(self, record: PaperRecord) -> bool:
        words, flat = text_words("\n".join((record.title, record.summary, record.abstract)))
        if self.include is not None and not keyword_hits(self.include, words, flat):
            return False
        return self.exclude is None or not keyword_hits(self.exclude, words, flat)


@dataclass(frozen=True)
class SourcesFile:
    path: Path
    sources: tuple[Source, ...]

    def check_topics(self, known: frozenset[str]) -> None:
        """Topic hints must be slugs of the taxonomy (known only once the database is up)."""
        for number, source in enumerate(self.sources, start=1):
            unknown = [t for t in source.topics if t not in known]
            if unknown:
                raise SourcesFileError(
                    f"{self.path}: source {number} ({source.name!r}), field 'topics': unknown "
                    f"topic slug(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
                )


def _describe(path: Path, doc: Any, error: dict[str, Any]) -> str:
    loc = [part for part in error.get("loc", ())]
    where = [str(path)]
    if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
        number = loc[1] + 1
        entry = doc["sources"][loc[1]] if isinstance(doc, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where.append(f"source {number}" + (f" ({name!r})" if name else ""))
        rest = [str(p) for p in loc[2:] if str(p) not in SOURCE_TYPES]
    else:
        rest = [str(p) for p in loc]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        got = (error.get("ctx") or {}).get("tag")
        rest = ["type"]
        message = f"must be one of {', '.join(SOURCE_TYPES)}" + (f" (got {got!r})" if got else "")
    if rest:
        where.append("field " + repr(".".join(rest)))
    if error.get("type") == "extra_forbidden":
        message = "is not a known setting of this source type"
    return ", ".join(where) + ": " + message


def load_sources_file(path: Path) -> SourcesFile:
    """Read and check the sources file; raises `SourcesFileError` naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourcesFileError(f"{path}: cannot read the sources file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SourcesFileError(f"{path}: is not valid UTF-8") from None
    try:
        doc = bounded_yaml.safe_load(text)
    except bounded_yaml.TooManyAliases as exc:
        raise SourcesFileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SourcesFileError(f"{path}: is not valid YAML{where}") from None
    if not isinstance(doc, dict) or "sources" not in doc:
        raise SourcesFileError(f"{path}: must hold `sources:`, a list of sources")
    try:
        parsed = _File.model_validate(doc)
    except ValidationError as exc:
        raise SourcesFileError(_describe(path, doc, exc.errors()[0])) from None
    sources: list[Source] = []
    names: set[str] = set()
    for number, source in enumerate(parsed.sources, start=1):
        name = source.name or f"{source.type}-{number}"
        if name in names:
            raise SourcesFileError(
                f"{path}: source {number}, field 'name': {name!r} is used by an earlier source"
            )
        names.add(name)
        update: dict[str, Any] = {"name": name}
        if isinstance(source, DirectorySource):  # relative to the sources file, not the cwd
            folder = (path.parent / source.path).resolve()
            update["path"] = folder
            update["move_to"] = (
                (path.parent / source.move_to).resolve() if source.move_to else folder / "imported"
            )
        sources.append(source.model_copy(update=update))
    return SourcesFile(path=path, sources=tuple(sources))
