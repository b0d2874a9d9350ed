"""``OUT/references.jsonl``: one line per (image, page) reference, with what the page
says of the image (``web.describe``) and its opt-out signal.

A dataset crawl (``for_dataset``) writes every reference of every page, the variants
``--variants largest`` left unfetched among them (``variant_of``: the URL fetched in
their place). Any crawl writes the references of a page that opts out of AI use, so
that the opt-out is known to every export. Lines are whole or absent (``LineFile``);
a page fetched again after a crash writes its lines again, and readers keep one per
(image, page).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.output.manifest import LineFile, repair_torn_line
from crawler.records import record_line
from crawler.web.describe import ImageText, PageDescription
from crawler.web.extract import ImageRef

REFERENCES_NAME = "references.jsonl"
# The fields of a line, in the order the export and the schema list them.
FIELDS = (
    "url",
    "page",
    "kind",
    "alt",
    "title",
    "caption",
    "context",
    "page_title",
    "lang",
    "descriptor",
    "picture",
    "variant_of",
    "opt_out",
)
_TEXT_FIELDS = ("alt", "title", "caption", "context", "lang", "descriptor", "picture")


def reference_rows(
    page: str,
    images: Iterable[ImageRef],
    description: PageDescription | None,
    opt_out: str | None,
) -> list[dict[str, Any]]:
    """The lines of one page: each of ``images``, then the variants left out (kinds
    ``variant``), each with the page's text for it; None fields left out."""
    rows: list[dict[str, Any]] = []
    texts = description.images if description else {}
    page_title = description.page_title if description else None
    page_lang = description.lang if description else None
    seen: set[str] = set()

    def add(url: str, kind: str, variant_of: str | None) -> None:
        if url in seen:
            return
        seen.add(url)
        text = texts.get(url) or ImageText()
        row: dict[str, Any] = {"url": url, "page": page, "kind": kind}
        row.update((name, getattr(text, name)) for name in _TEXT_FIELDS)
        row["lang"] = text.lang or page_lang
        row.update(page_title=page_title, variant_of=variant_of, opt_out=opt_out)
        rows.append({name: value for name, value in row.items() if value is not None})

    for ref in images:
        add(ref.url, ref.kind, None)
    if description:
        for url, largest in description.alternatives.items():
            add(url, "variant", largest)
    return rows


class References:
    """The append-only references file of OUT."""

    def __init__(self, out: Path) -> None:
        self.path = out / REFERENCES_NAME
        self._file: LineFile | None = None  # opened on the first line: most crawls write none

    def write(self, rows: list[dict[str, Any]]) -> None:
        """A page's lines, all together."""
        if not rows:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_torn_line(self.path)
            self._file = LineFile(self.path)
        with self._file.batch():
            for row in rows:
                self._file.write_line(record_line(row))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class ImageReferences:
    """What the references say of one image URL: the first line of it that no opt-out
    marks (else its first line), how many pages show it, and its opt-out signals."""

    row: dict[str, Any]
    pages: set[int] = field(default_factory=set)  # crc32 of each page URL
    opt_out: str | None = None


def read_references(out: Path) -> dict[str, ImageReferences]:
    """Every image URL of OUT's references file, ``ImageReferences`` each (empty when
    there is none). Memory: one line per image URL plus a few bytes per page."""
    found: dict[str, ImageReferences] = {}
    for row in _rows(out / REFERENCES_NAME):
        url, page = row.get("url"), row.get("page")
        if not isinstance(url, str) or not isinstance(page, str):
            continue
        signal = row.get("opt_out") if isinstance(row.get("opt_out"), str) else None
        known = found.get(url)
        if known is None:
            known = found[url] = ImageReferences(row)
        elif known.row.get("opt_out") and not signal:
            known.row = row
        known.pages.add(zlib.crc32(page.encode("utf-8", "replace")))
        if signal and not known.opt_out:
            known.opt_out = signal
    return found


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if isinstance(row, dict):
                yield row
