"""Recrawls: what a page referenced, kept for its next crawl, and how a crawl compares
with the one before it. Pure but for ``write_report``.

A page's references (``refs``) are the image URLs it yields, with their kinds, and the
links it gives the frontier, as JSON in the crawl state. A recrawl sends the page's
validators; on a 304 its references are taken from there, so its images and links
are the same as last time without a body to parse.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_NAME = "recrawl.json"

NOT_MODIFIED = "not_modified"  # 304: its references are last time's
UNCHANGED = "unchanged"  # fetched whole, references the same
CHANGED = "changed"  # fetched whole, references differ
NEW = "new"  # not in the crawl before
GONE = "gone"  # referenced images before, fails now
OUTCOMES = (NOT_MODIFIED, CHANGED, UNCHANGED, NEW, GONE)


def refs_json(images: Iterable[tuple[str, str]], links: Iterable[str]) -> str:
    """A page's references as kept in the state: (image URL, kind) pairs and links."""
    return json.dumps({"images": [list(pair) for pair in images], "links": list(links)})


def parse_refs(text: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(images with kinds, links) of kept references; nothing for none or a bad row."""
    if not text:
        return [], []
    try:
        data = json.loads(text)
        images = [(str(url), str(kind)) for url, kind in data.get("images", [])]
        return images, [str(link) for link in data.get("links", [])]
    except (ValueError, TypeError, AttributeError):
        return [], []


def page_outcome(refs: str, refs_before: str | None) -> str:
    """How a page fetched whole compares with the crawl before (``refs_before`` None:
    the page is new to the crawl)."""
    if refs_before is None:
        return NEW
    return UNCHANGED if _same(refs, refs_before) else CHANGED


def _same(refs: str, refs_before: str) -> bool:
    images, links = parse_refs(refs)
    images_before, links_before = parse_refs(refs_before)
    return {url for url, _ in images} == {url for url, _ in images_before} and set(links) == set(
        links_before
    )


@dataclass
class RecrawlReport:
    """What a recrawl found, against the crawl before it."""

    recrawl: int
    pages: dict[str, int] = field(default_factory=dict)  # by outcome
    new_images: list[str] = field(default_factory=list)
    gone_images: list[str] = field(default_factory=list)
    changed_pages: list[str] = field(default_factory=list)
    gone_pages: list[str] = field(default_factory=list)

    def line(self) -> str:
        counts = ", ".join(f"{self.pages.get(o, 0)} {o.replace('_', ' ')}" for o in OUTCOMES)
        return (
            f"recrawl {self.recrawl}: pages {counts}; {len(self.new_images)} new images, "
            f"{len(self.gone_images)} images no page references any more"
        )


def compare(
    recrawl: int,
    pages: Iterable[tuple[str, str, str | None, str]],
    new_images: list[str],
) -> RecrawlReport:
    """The report of a finished recrawl from every page's (url, refs, refs_before,
    outcome): an image is gone when a page referenced it before and none does now."""
    report = RecrawlReport(recrawl, new_images=new_images)
    before: set[str] = set()
    now: set[str] = set()
    for url, refs, refs_before, outcome in pages:
        now.update(image for image, _ in parse_refs(refs)[0])
        before.update(image for image, _ in parse_refs(refs_before)[0])
        if outcome:
            report.pages[outcome] = report.pages.get(outcome, 0) + 1
        if outcome == CHANGED:
            report.changed_pages.append(url)
        elif outcome == GONE:
            report.gone_pages.append(url)
    report.gone_images = sorted(before - now)
    return report


def write_report(out_dir: Path, report: RecrawlReport) -> Path:
    """``OUT/recrawl.json``, replaced whole (a reader never sees half of it)."""
    path = out_dir / REPORT_NAME
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(asdict(report), indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path
