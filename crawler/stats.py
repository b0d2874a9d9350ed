"""The crawl's running figures: one object per crawl.

The harvester counts into a ``CrawlStats``; the progress log carries it as the fields of
its ``totals``, ``crawl_stopped`` and ``crawl_finished`` events (``fields``); readers of
the log (``report``) take it back from them (``from_fields``). So a figure has one name
and one meaning everywhere, and survives a resume (the harvester starts from the state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


@dataclass
class CrawlStats:
    pages: int = 0  # pages fetched (and parsed)
    page_errors: int = 0  # pages that failed for good
    stored: int = 0  # images stored
    failed: int = 0  # images that failed for good
    bytes: int = 0  # bytes of the stored images

    def count_page(self, ok: bool) -> None:
        if ok:
            self.pages += 1
        else:
            self.page_errors += 1

    def count_image(self, stored: bool, size: int | None) -> None:
        if stored:
            self.stored += 1
            self.bytes += size or 0
        else:
            self.failed += 1

    def fields(self) -> dict[str, int]:
        """The figures as log fields (and ``crawler status``'s)."""
        return asdict(self)

    @classmethod
    def from_fields(cls, record: Mapping[str, str]) -> CrawlStats | None:
        """The figures of a log event that carries them; None for one that does not."""
        values = {}
        for name in cls.__dataclass_fields__:
            text = record.get(name)
            if text is None or not text.isdigit():
                return None
            values[name] = int(text)
        return cls(**values)
