"""The seam between the crawl and its metrics: what the harvester and a downloader
node tell them, as two narrow protocols, and ``NoMetrics``, the double that is also
the default (``--metrics`` not given: nothing is counted, nothing listens).

The harvester counts events as they happen (``HarvestMetrics``) and hands over a
function that reads the crawl's state (``CrawlFigures``), which an exporter calls
at each scrape, so that gauges are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from crawler.broker.board import Task
from crawler.broker.broker import QueueFigures
from crawler.records import Result

# Where a downloader process of a multi-process node writes its values (set by the
# node's parent); the library itself reads PROMETHEUS_MULTIPROC_DIR.
METRICS_DIR_ENV = "CRAWLER_METRICS_DIR"
LIBRARY_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Outcomes of a page for ``HarvestMetrics.page``.
PAGE_FETCHED, PAGE_FAILED, PAGE_SKIPPED, PAGE_RETRIED = "fetched", "failed", "skipped", "retried"


def never() -> bool:
    """A ``cancelled`` that never is."""
    return False


@dataclass(frozen=True)
class CrawlFigures:
    """The crawl's state at one moment: the queue's figures and the harvester's own."""

    queue: QueueFigures
    frontier: int  # pages queued or being fetched
    finished: bool


class HarvestMetrics(Protocol):
    """What the harvester counts. Every method is cheap and never raises."""

    where: str  # the endpoint, for messages ("" when none)

    def page(self, outcome: str, error: str | None, seconds: float | None) -> None:
        """A page's outcome (``PAGE_*``), its error and its fetch time (None: not fetched)."""

    def render(self, error: str | None, seconds: float, images: int) -> None:
        """A page was rendered: its render error (None: it finished), its time, and the
        image URLs only the render found."""

    def script_page_unrendered(self) -> None:
        """A page whose scripts look like they build images or links was not rendered."""

    def images_queued(self, count: int) -> None:
        """``count`` new image tasks were queued."""

    def image_final(self, task: Task) -> None:
        """A task became final (stored or failed), as the recorder writes it down."""

    def node_event(self, name: str) -> None:
        """A broker event about a node (``node_joined``, ``node_lost``, ``node_left`` ...)."""

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        """At the crawl's end: serve the final figures until a scrape has read them, at
        most ``seconds``, and no longer once ``cancelled()`` (a stop was asked for)."""

    def close(self) -> None:
        """Stop serving."""


class NodeMetrics(Protocol):
    """What a downloader process counts (every method cheap; none raises)."""

    where: str

    def pool(self, size: int) -> None:
        """The process may run ``size`` downloads at once."""

    def in_flight(self, count: int) -> None:
        """``count`` tasks are leased and not finished (told after each lease and at
        each report: a gauge needs no write per image)."""

    def reported(self, results: Sequence[Result]) -> None:
        """A batch of results went to the harvester (a stored one: its file durable and
        in place)."""

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        """As ``HarvestMetrics.linger``."""

    def close(self) -> None:
        """Stop serving; a process of a multi-process node leaves the node's figures."""


FiguresSource = Callable[[], CrawlFigures]


class NoMetrics:
    """Counts nothing: the default, and the double of tests that do not look."""

    where = ""

    def page(self, outcome: str, error: str | None, seconds: float | None) -> None:
        pass

    def render(self, error: str | None, seconds: float, images: int) -> None:
        pass

    def script_page_unrendered(self) -> None:
        pass

    def images_queued(self, count: int) -> None:
        pass

    def image_final(self, task: Task) -> None:
        pass

    def node_event(self, name: str) -> None:
        pass

    def pool(self, size: int) -> None:
        pass

    def in_flight(self, count: int) -> None:
        pass

    def reported(self, results: Sequence[Result]) -> None:
        pass

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        pass

    def close(self) -> None:
        pass


def child_process() -> bool:
    """Whether this process is one of a multi-process node's (its parent serves)."""
    return bool(os.environ.get(METRICS_DIR_ENV))
