"""The crawl's figures: counted once, carried by the log, read back the same."""

from __future__ import annotations

from crawler.output.progress import format_line, parse_line
from crawler.stats import CrawlStats


def test_counts_go_to_their_figure() -> None:
    stats = CrawlStats()
    stats.count_page(ok=True)
    stats.count_page(ok=False)
    stats.count_image(stored=True, size=100)
    stats.count_image(stored=True, size=None)
    stats.count_image(stored=False, size=50)

    assert stats == CrawlStats(pages=1, page_errors=1, stored=2, failed=1, bytes=100)


def test_the_figures_survive_a_trip_through_the_progress_log() -> None:
    stats = CrawlStats(pages=3, page_errors=1, stored=20, failed=2, bytes=12345)

    line = format_line("totals", {"frontier": 7, **stats.fields()}, 0.0)

    assert CrawlStats.from_fields(parse_line(line)) == stats


def test_an_event_without_the_figures_gives_none() -> None:
    assert CrawlStats.from_fields({"event": "stored", "pages": "3"}) is None
    figures = {name: str(value) for name, value in CrawlStats().fields().items()}
    assert CrawlStats.from_fields(figures) == CrawlStats()
    assert CrawlStats.from_fields({**figures, "stored": "x"}) is None
