"""What a crawl's report shows, as figures: folded from the manifest (``ManifestFigures``,
one ``add`` per record) and the progress log (``LogFigures``), with the failures grouped
by reason and the throughput in time bins. Pure data; ``report.py`` renders it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.output.progress import parse_line, parse_ts
from crawler.records import STORED, error_code

EXAMPLES_PER_REASON = 5


# Histogram bin widths in seconds: each divides the next, so bins merge exactly.
CHART_BARS = 40
BIN_WIDTHS = (0.05, 0.1, 0.2, 1, 2, 10, 20, 60, 120, 600, 1200, 3600, 7200, 21600, 86400)


@dataclass
class FailureGroups:
    """Failures per reason, with the first few examples (url, page, error) of each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def add(self, error: str | None, url: str, page: str) -> None:
        reason = error_code(error)
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append((url, page, error or ""))


@dataclass
class Tile:
    """One gallery tile: a distinct stored file and the first URL it was found at."""

    sha256: str
    url: str
    page: str
    kind: str
    bytes: int
    width: int | None
    height: int | None
    path: str | None
    content_type: str
    node: str
    file: str | None  # the stored file under OUT; None when it is not there
    other_urls: int = 0
    thumbnail: str | None = None  # data: URI
    note: str = ""  # why there is no thumbnail


@dataclass
class ManifestFigures:
    """Counters folded from manifest records, one ``add`` per record.

    ``locate`` maps a record's ``path`` to the file under OUT (None when it is not
    there); it is called once per distinct file.
    """

    max_tiles: int
    locate: Callable[[Any], str | None]
    records: int = 0
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    distinct_bytes: int = 0
    here_files: int = 0  # distinct files found under OUT
    here_bytes: int = 0
    # Distinct files not under OUT, per node that stored them: [files, bytes].
    elsewhere: defaultdict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    kinds: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    hosts: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    nodes: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    failures: FailureGroups = field(default_factory=FailureGroups)
    tiles: dict[str, Tile] = field(default_factory=dict)
    hashes: set[int] = field(default_factory=set)

    def add(self, record: dict[str, Any]) -> None:
        url, page = text_of(record.get("url")), text_of(record.get("page"))
        node = text_of(record.get("node")) or "unknown"
        stored = record.get("outcome") == STORED
        column = 0 if stored else 1
        self.records += 1
        for tally, key in (
            (self.kinds, text_of(record.get("kind")) or "unknown"),
            (self.hosts, _host(url)),
            (self.nodes, node),
        ):
            tally[key][column] += 1
        if not stored:
            self.failed += 1
            self.failures.add(text_of(record.get("error")), url, page)
            return
        self.stored += 1
        size = _int(record.get("bytes")) or 0
        self.bytes += size
        sha256 = text_of(record.get("sha256")) or text_of(record.get("path")) or url
        if sha256 in self.tiles:
            self.tiles[sha256].other_urls += 1
        if hash(sha256) in self.hashes:
            return
        self.hashes.add(hash(sha256))
        self.distinct_bytes += size
        file = self.locate(record.get("path"))
        if file:
            self.here_files += 1
            self.here_bytes += size
        else:
            self.elsewhere[node][0] += 1
            self.elsewhere[node][1] += size
        if len(self.tiles) < self.max_tiles:
            self.tiles[sha256] = Tile(
                sha256=sha256,
                url=url,
                page=page,
                kind=text_of(record.get("kind")),
                bytes=size,
                width=_int(record.get("width")),
                height=_int(record.get("height")),
                path=text_of(record.get("path")) or None,
                content_type=text_of(record.get("content_type")),
                node=node,
                file=file,
            )

    @property
    def distinct_elsewhere(self) -> int:
        return len(self.hashes) - self.here_files

    @property
    def bytes_elsewhere(self) -> int:
        return self.distinct_bytes - self.here_bytes

    def nodes_elsewhere(self) -> list[tuple[str, int, int]]:
        """(node, files, bytes) of the distinct files not under OUT, most files first."""
        ranked = sorted(self.elsewhere.items(), key=lambda item: (-item[1][0], item[0]))
        return [(node, files, size) for node, (files, size) in ranked]


@dataclass
class Timeline:
    """Event counts per time bin since ``origin``.

    When more than ``max_bins`` bins would be needed, bins merge into the next width of
    ``BIN_WIDTHS``: memory stays fixed however long the crawl ran.
    """

    origin: float
    width: float = BIN_WIDTHS[0]
    max_bins: int = 1024
    counts: list[int] = field(default_factory=list)

    def add(self, ts: float, count: int = 1) -> None:
        while (index := max(int((ts - self.origin) / self.width), 0)) >= self.max_bins:
            self._widen()
        self.counts.extend([0] * (index + 1 - len(self.counts)))
        self.counts[index] += count

    def coarsened(self, max_bins: int) -> Timeline:
        """A copy with at most ``max_bins`` bins."""
        copy = Timeline(self.origin, self.width, max_bins, list(self.counts))
        while len(copy.counts) > max_bins:
            copy._widen()
        return copy

    def _widen(self) -> None:
        wider = next((w for w in BIN_WIDTHS if w > self.width + 1e-9), self.width * 2)
        factor = round(wider / self.width)
        self.counts = [sum(self.counts[i : i + factor]) for i in range(0, len(self.counts), factor)]
        self.width = wider


SCRIPT_EXAMPLES = 5  # pages named whose scripts may build images (not rendered)


@dataclass
class LogFigures:
    """Figures folded from progress log records, one ``add`` per line."""

    seeds: list[str] = field(default_factory=list)
    runs: int = 0
    first: float | None = None
    started: float | None = None
    finished: float | None = None
    last: float | None = None
    pages: int = 0
    references: int = 0
    page_failures: FailureGroups = field(default_factory=FailureGroups)
    # Pages whose scripts may build images or links and that were not rendered, a few
    # of them by name; pages rendered and the images only rendering found.
    script_pages: int = 0
    script_examples: list[str] = field(default_factory=list)
    rendered_pages: int = 0
    rendered_images: int = 0
    totals: dict[str, str] = field(default_factory=dict)  # latest totals or crawl_finished
    stored_timeline: Timeline | None = None
    totals_timeline: Timeline | None = None
    _stored_total: int = 0

    def add(self, record: dict[str, str]) -> None:
        ts = parse_ts(record.get("ts"))
        if ts is None:
            return
        if self.first is None:
            self.first = ts
            self.stored_timeline, self.totals_timeline = Timeline(ts), Timeline(ts)
        self.last = ts
        event = record.get("event")
        if event in ("crawl_started", "crawl_resumed"):
            self.runs += 1
            self.started = self.started if self.started is not None else ts
            self.seeds += [s for s in record.get("seeds", "").split() if s not in self.seeds]
        elif event == "page_fetched":
            self.pages += 1
            self.references += _int(record.get("images")) or 0
            if record.get("rendered"):
                self.rendered_pages += 1
                self.rendered_images += _int(record.get("rendered_images")) or 0
            elif record.get("scripts"):
                self.script_pages += 1
                if len(self.script_examples) < SCRIPT_EXAMPLES:
                    self.script_examples.append(record.get("url", ""))
        elif event == "page_failed":
            self.page_failures.add(record.get("error"), record.get("url", ""), "")
        elif event == "stored":
            self.stored_timeline.add(ts)
        elif event in ("totals", "crawl_finished"):
            self.totals = record
            stored = _int(record.get("stored")) or 0
            self.totals_timeline.add(ts, max(stored - self._stored_total, 0))
            self._stored_total = stored
            if event == "crawl_finished":
                self.finished = ts

    def throughput(self) -> tuple[Timeline, str] | None:
        """Stored images over the whole log, at most ``CHART_BARS`` bins, from stored
        events or else the periodic totals, and which; None when nothing was stored."""
        for timeline, source in (
            (self.stored_timeline, "stored events"),
            (self.totals_timeline, "periodic totals"),
        ):
            if timeline is not None and self.last is not None and sum(timeline.counts):
                whole = timeline.coarsened(timeline.max_bins)
                whole.add(self.last, 0)  # run the time axis to the end of the log
                return whole.coarsened(CHART_BARS), source
        return None

    @property
    def duration(self) -> float | None:
        start = self.started if self.started is not None else self.first
        end = self.finished if self.finished is not None else self.last
        return end - start if start is not None and end is not None else None


def _host(url: str) -> str:
    """``host[:port]`` of an absolute URL: ``urlsplit(url).netloc``, for much less
    (it runs once per manifest record; docs/design-notes.md)."""
    _, slashes, rest = url.partition("//")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0] if slashes else ""
    return host or "unknown"


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_log(path: Path) -> LogFigures | None:
    if not path.is_file():
        return None
    figures = LogFigures()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            figures.add(parse_line(line))
    return figures
