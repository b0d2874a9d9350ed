"""The crawl as one HTML page: figures, throughput, failures and a gallery.

``write_report`` reads OUT/manifest.jsonl (and the progress log, when there is one) and
writes OUT/report.html. The page is self-contained: no script, no external style, font
or image. Thumbnails are ``data:`` URIs rather than files under OUT, so the page stays one
file that can be mailed, archived or opened anywhere; at 160 px in WebP a thumbnail
weighs 1-6 kB, so the default 2,000 of them add a few MB, which browsers open easily.
A Content-Security-Policy allows nothing but inline style and ``data:`` images: were a
string ever left unescaped, it could neither run code nor reach the network.

Work is bounded whatever the crawl's size: manifest and log are streamed; what is kept is
counters, the first ``max_thumbnails`` distinct files, five examples per failure reason,
a time histogram of fixed length, and one 64-bit hash per distinct file (to count them).
Each distinct file costs one ``stat``: a downloader node on another machine stores its
files under its own ``--out``, so the page counts the files found under OUT apart from the
ones it cannot find, names the node that stored each of those and says how to gather them.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import shlex
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, features

from crawler.errors import CrawlerError
from crawler.output.export import manifest_records, stored_file
from crawler.output.progress import parse_line, parse_ts
from crawler.records import STORED
from crawler.stats import CrawlStats
from crawler.storage import TMP_DIR
from crawler.web.verify import PILLOW_FAILURES

REPORT_NAME = "report.html"
THUMBNAIL_BOX = (160, 160)
THUMBNAIL_FORMAT, THUMBNAIL_MIME = (
    ("WEBP", "image/webp") if features.check("webp") else ("PNG", "image/png")
)
EXAMPLES_PER_REASON = 5
TABLE_ROWS = 12
CHART_BARS = 40
NODES_IN_SUMMARY = 3
# Histogram bin widths in seconds: each divides the next, so bins merge exactly.
BIN_WIDTHS = (0.05, 0.1, 0.2, 1, 2, 10, 20, 60, 120, 600, 1200, 3600, 7200, 21600, 86400)
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


@dataclass(frozen=True)
class ReportSummary:
    """What ``write_report`` wrote, for the one line the CLI prints."""

    path: Path
    images: int  # distinct stored files
    tiles: int  # gallery tiles (thumbnails and placeholders)
    thumbnails: int
    left_out: int  # distinct files beyond max_thumbnails
    failure_groups: int  # reasons images failed for (pages are in the page only)
    elsewhere: tuple[tuple[str, int], ...] = ()  # (node, files) not under OUT, most first

    def line(self) -> str:
        left_out = f", {self.left_out} left out" if self.left_out else ""
        return (
            f"report: {self.path} ({self.tiles} of {self.images} images shown{left_out}, "
            f"{self.thumbnails} thumbnails, {self.failure_groups} "
            f"failure reason{'' if self.failure_groups == 1 else 's'})"
            + (f"; {self._gather_note()}" if self.elsewhere else "")
        )

    def _gather_note(self) -> str:
        out = self.path.parent
        shown = [
            f"{files:,} on node {node if node.isprintable() else repr(node)}"
            for node, files in self.elsewhere[:NODES_IN_SUMMARY]
        ]
        rest = self.elsewhere[NODES_IN_SUMMARY:]
        if rest:
            shown.append(f"{sum(files for _, files in rest):,} on {len(rest):,} more nodes")
        total = sum(files for _, files in self.elsewhere)
        return (
            f"{total:,} file{' is' if total == 1 else 's are'} not in {out}: "
            f"{', '.join(shown)}; copy each node's --out folder into {out}, e.g. "
            f"{gather_command(out)} (content-addressed names never collide), "
            "then run crawler report again"
        )


def gather_command(out: Path) -> str:
    """How to copy a node's stored files into OUT: they land where the manifest says."""
    return f"rsync -a --exclude {TMP_DIR} NODEHOST:DIR/ {shlex.quote(str(out))}/"


# -- folding the manifest and the log into figures -------------------------------------


def failure_reason(error: str | None) -> str:
    """Group key of an error: ``connection_error: refused`` -> ``connection_error``."""
    return (error or "").split(":", 1)[0].strip() or "unknown"


@dataclass
class FailureGroups:
    """Failures per reason, with the first few examples (url, page, error) of each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def add(self, error: str | None, url: str, page: str) -> None:
        reason = failure_reason(error)
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
        url, page = _text(record.get("url")), _text(record.get("page"))
        node = _text(record.get("node")) or "unknown"
        stored = record.get("outcome") == STORED
        column = 0 if stored else 1
        self.records += 1
        for tally, key in (
            (self.kinds, _text(record.get("kind")) or "unknown"),
            (self.hosts, _host(url)),
            (self.nodes, node),
        ):
            tally[key][column] += 1
        if not stored:
            self.failed += 1
            self.failures.add(_text(record.get("error")), url, page)
            return
        self.stored += 1
        size = _int(record.get("bytes")) or 0
        self.bytes += size
        sha256 = _text(record.get("sha256")) or _text(record.get("path")) or url
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
                kind=_text(record.get("kind")),
                bytes=size,
                width=_int(record.get("width")),
                height=_int(record.get("height")),
                path=_text(record.get("path")) or None,
                content_type=_text(record.get("content_type")),
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- thumbnails ----------------------------------------------------------------------------


def make_thumbnail(path: str | Path) -> tuple[bytes, tuple[int, int]] | None:
    """A thumbnail of the image's first frame, and the image's size; None if unreadable.

    Pillow's decompression-bomb warning is an error here, as in ``verify``; JPEGs are
    decoded at a reduced scale (``draft``), so a large photo costs little.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                image.draft("RGB", (THUMBNAIL_BOX[0] * 2, THUMBNAIL_BOX[1] * 2))
                alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa")
                frame = image.convert("RGBA" if alpha or "transparency" in image.info else "RGB")
            frame.thumbnail(THUMBNAIL_BOX)
            buffer = io.BytesIO()
            frame.save(buffer, THUMBNAIL_FORMAT, quality=75)
    except (*PILLOW_FAILURES, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    return buffer.getvalue(), size


def add_thumbnail(tile: Tile) -> None:
    """Fill the tile's thumbnail (and missing dimensions), or say why there is none."""
    if tile.file is None:
        tile.note = f"not here: on node {tile.node}"
        return
    if tile.content_type == "image/svg+xml" or (tile.path or "").endswith(".svg"):
        tile.note = "SVG: not rendered"  # a script inside an SVG is not ours to run
        return
    made = make_thumbnail(tile.file)
    if made is None:
        tile.note = "cannot be read"
        return
    data, (width, height) = made
    tile.thumbnail = f"data:{THUMBNAIL_MIME};base64,{base64.b64encode(data).decode()}"
    tile.width, tile.height = tile.width or width, tile.height or height


# -- HTML ------------------------------------------------------------------------------------

CSS = """
:root{--ink:#1c2430;--muted:#5d6978;--line:#e2e6ec;--bg:#f4f6f9;--accent:#2c6bd6;--bad:#c0392b}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:24px;margin:0}h2{font-size:16px;margin:0 0 12px}h3{font-size:14px;margin:0 0 6px}
header p,.muted{color:var(--muted);margin:4px 0 0}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;margin:20px 0}
.card,section{background:#fff;border:1px solid var(--line);border-radius:8px}
.card{padding:12px 14px}.card b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.card span{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.bad b{color:var(--bad)}
section{padding:16px 20px;margin:16px 0}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:24px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.figures th{width:45%;font-size:14px;color:var(--muted);font-weight:400}
.wrap{overflow-wrap:anywhere}
.chart{width:100%;height:auto;display:block}
.chart .bar{fill:var(--accent)}.chart .grid{stroke:var(--line)}
.chart text{fill:var(--muted);font-size:11px}
.group{margin:0 0 16px}.group h3 .n{color:var(--bad);font-weight:500;margin-left:6px}
.gallery{margin-top:10px;display:grid;grid-template-columns:repeat(auto-fill,minmax(176px,1fr));gap:12px}
.tile{margin:0;border:1px solid var(--line);border-radius:6px;overflow:hidden;font-size:12px;
 min-width:0}
.thumb{display:block;width:100%;height:140px;object-fit:scale-down;
 background:repeating-conic-gradient(#eef1f5 0 25%,#fff 0 50%) 0 0/16px 16px}
.placeholder{display:flex;align-items:center;justify-content:center;color:var(--muted);
 background:#eef1f5;font-size:12px}
.meta{padding:6px 8px;border-top:1px solid var(--line)}
.meta .line{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.meta .facts{color:var(--muted)}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);
 padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _escape(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _link(url: str, text: str | None = None) -> str:
    """A link for an http(s) URL; any other scheme (javascript:, data:) is plain text."""
    label = _escape(url if text is None else text)
    if urlsplit(url.strip()).scheme.lower() in ("http", "https"):
        return f'<a href="{_escape(url)}" title="{_escape(url)}" rel="noreferrer">{label}</a>'
    return f'<span class="url" title="{_escape(url)}">{label}</span>'


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _when(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rate(manifest: ManifestFigures, log: LogFigures | None) -> float | None:
    """Average stored images per second over the crawl's span in the log."""
    duration = log.duration if log else None
    return manifest.stored / duration if duration else None


def _cards(manifest: ManifestFigures, log: LogFigures | None) -> str:
    duration = log.duration if log else None
    cards = [
        ("images stored", _number(manifest.stored), ""),
        ("failed", _number(manifest.failed), " bad" if manifest.failed else ""),
        ("distinct files", _number(len(manifest.hashes)), ""),
        ("downloaded", _size(manifest.bytes), ""),
        ("pages", _number(_pages(log)[0]) if log else "—", ""),
        ("duration", _duration(duration), ""),
        ("images / s", _number(_rate(manifest, log), 1), ""),
    ]
    if manifest.elsewhere:
        cards.insert(3, ("not in this folder", _number(manifest.distinct_elsewhere), " bad"))
    body = "".join(
        f'<div class="card{cls}"><b>{v}</b><span>{k}</span></div>' for k, v, cls in cards
    )
    return f'<div class="cards">{body}</div>'


def _pages(log: LogFigures) -> tuple[int, int]:
    """Pages fetched and failed: the harvester's own figures (they survive a resume),
    else what the log's page events say."""
    stats = CrawlStats.from_fields(log.totals)
    if stats is not None:
        return stats.pages, stats.page_errors
    return log.pages, log.page_failures.counts.total()


def _figures(manifest: ManifestFigures, log: LogFigures | None, skipped: int) -> str:
    crawl: list[tuple[str, str]] = []
    if log:
        fetched, failed = _pages(log)
        runs = f" over {log.runs} runs" if log.runs > 1 else ""
        crawl += [
            ("Seeds", "<br>".join(_link(seed) for seed in log.seeds) or "—"),
            ("Started", _when(log.started if log.started is not None else log.first)),
            ("Finished", _when(log.finished) if log.finished else "not finished"),
            ("Duration", _duration(log.duration) + runs),
            ("Pages fetched / failed", f"{fetched:,} / {failed:,}"),
            ("Image references on pages", _number(log.references)),
        ]
    else:
        crawl.append(("Progress log", "none found: these figures come from the manifest"))
    images = [
        ("Image URLs found", _number(manifest.records)),
        ("Stored / failed", f"{manifest.stored:,} / {manifest.failed:,}"),
        ("Distinct files (sha256)", _number(len(manifest.hashes))),
        ("Bytes downloaded", f"{manifest.bytes:,} ({_size(manifest.bytes)})"),
        ("Files in this folder", _files(manifest.here_files, manifest.here_bytes)),
        ("Average images / s", _number(_rate(manifest, log), 1)),
    ]
    if manifest.elsewhere:
        elsewhere = _files(manifest.distinct_elsewhere, manifest.bytes_elsewhere)
        count = len(manifest.elsewhere)
        where = f"on {count:,} node{'' if count == 1 else 's'}: see below"
        images.append(("Files not in this folder", f"{elsewhere}, {where}"))
    if skipped:
        images.append(("Manifest lines skipped", f"{skipped:,} (torn or damaged)"))
    tables = "".join(
        '<table class="figures">'
        + "".join(f"<tr><th>{k}</th><td class='wrap'>{v}</td></tr>" for k, v in rows)
        + "</table>"
        for rows in (crawl, images)
    )
    return f'<section><h2>Crawl</h2><div class="columns">{tables}</div></section>'


def _files(count: int, size: int) -> str:
    return f"{count:,} file{'' if count == 1 else 's'}, {size:,} bytes ({_size(size)})"


def _other_nodes(manifest: ManifestFigures, out: Path) -> str:
    """Which node holds each stored file that is not under OUT, and how to gather them."""
    if not manifest.elsewhere:
        return ""
    ranked = manifest.nodes_elsewhere()
    rows = "".join(
        f"<tr><td class='wrap'>{_escape(node)}</td><td class='n'>{files:,}</td>"
        f"<td class='n'>{_size(size)}</td></tr>"
        for node, files, size in ranked[:TABLE_ROWS]
    )
    if len(ranked) > TABLE_ROWS:
        rest = ranked[TABLE_ROWS:]
        rows += (
            f"<tr><td class='muted' colspan='3'>and {len(rest):,} more nodes with "
            f"{sum(files for _, files, _ in rest):,} files</td></tr>"
        )
    total = manifest.distinct_elsewhere
    return (
        "<section><h2>Files on other nodes</h2>"
        f"<p>{total:,} stored file{' is' if total == 1 else 's are'} not in {_escape(out)}: "
        "a downloader node keeps the files it stores under its own <code>--out</code>, on "
        "its own machine. The manifest names the node that stored each:</p>"
        "<table><tr><th>node</th><th class='n'>files</th><th class='n'>size</th></tr>"
        f"{rows}</table>"
        "<p>To gather them, copy each node's <code>--out</code> folder into this one, e.g. "
        f"<code>{_escape(gather_command(out))}</code> (content-addressed names never "
        f"collide), then run <code>crawler report {_escape(shlex.quote(str(out)))}</code> "
        'again. <span class="muted">A node id is its host name and process id, unless '
        "CRAWLER_NODE_ID set it.</span></p></section>"
    )


def _tally_table(title: str, tally: dict[str, list[int]]) -> str:
    ranked = sorted(tally.items(), key=lambda item: (-sum(item[1]), item[0]))
    rows = "".join(
        f"<tr><td class='wrap'>{_escape(key)}</td><td class='n'>{stored:,}</td>"
        f"<td class='n'>{failed:,}</td></tr>"
        for key, (stored, failed) in ranked[:TABLE_ROWS]
    )
    if len(ranked) > TABLE_ROWS:
        rows += f"<tr><td class='muted' colspan='3'>and {len(ranked) - TABLE_ROWS:,} more</td></tr>"
    head = f"<tr><th>{title}</th><th class='n'>stored</th><th class='n'>failed</th></tr>"
    return f"<div><table>{head}{rows}</table></div>"


def _breakdowns(manifest: ManifestFigures) -> str:
    tables = [
        _tally_table("kind", manifest.kinds),
        _tally_table("host", manifest.hosts),
        _tally_table("node", manifest.nodes),
    ]
    return (
        '<section><h2>Images by kind, host and node</h2><div class="columns">'
        f"{''.join(tables)}</div></section>"
    )


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value - 1e-9)


def _offset_label(seconds: float, step: float) -> str:
    if step >= 3600:
        return f"{seconds / 3600:g} h"
    if step >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def throughput_svg(chart: Timeline) -> str:
    """One bar per bin of ``chart``: images per second over time, as inline SVG."""
    width, height, left, right, top, bottom = 960, 170, 52, 12, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    rates = [count / chart.width for count in chart.counts] or [0.0]
    tick = _nice_ceiling(max(rates) / 4)
    lines = max(math.ceil(max(rates) / tick - 1e-9), 1)
    ceiling = tick * lines
    bar_w = plot_w / len(rates)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>stored images per second</title>'
    ]
    for i in range(lines + 1):
        y = top + plot_h * (1 - i / lines)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick * i:g}</text>'
        )
    for i, rate in enumerate(rates):
        bar_h = plot_h * rate / ceiling
        start = i * chart.width
        parts.append(
            f'<rect class="bar" x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{max(bar_w - 2, 1):.1f}" height="{bar_h:.1f}"><title>{start:g}&ndash;'
            f"{start + chart.width:g} s: {round(rate * chart.width)} images</title></rect>"
        )
    span = chart.width * len(rates)
    step = next((s for s in TICK_STEPS if span / s <= 8), span)
    for k in range(int(span / step + 1e-9) + 1):
        x = left + k * step / chart.width * bar_w
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">'
            f"{_offset_label(k * step, step)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _chart(log: LogFigures | None) -> str:
    throughput = log.throughput() if log else None
    if throughput:
        chart, source = throughput
        body = throughput_svg(chart) + (
            f'<p class="muted">Stored images per second, in bins of {chart.width:g} s from '
            f"the start of the log (from its {source}).</p>"
        )
    else:
        body = f'<p class="muted">{"No image was stored." if log else "No progress log."}</p>'
    return f"<section><h2>Throughput</h2>{body}</section>"


def _failure_groups(groups: FailureGroups, what: str, with_page: bool) -> str:
    blocks = []
    for reason, count in groups.counts.most_common():
        rows = "".join(
            f"<tr><td class='wrap'>{_link(url)}</td>"
            + (f"<td class='wrap'>{_link(page) if page else '—'}</td>" if with_page else "")
            + f"<td class='wrap'>{_escape(error)}</td></tr>"
            for url, page, error in groups.examples[reason]
        )
        head = f"<th>{what} URL</th>" + ("<th>found on page</th>" if with_page else "")
        noun = what if count == 1 else f"{what}s"
        blocks.append(
            f'<div class="group"><h3>{_escape(reason)} <span class="n">{count:,} {noun}</span>'
            f"</h3><table><tr>{head}<th>error</th></tr>{rows}</table></div>"
        )
    return "".join(blocks)


def _failures(manifest: ManifestFigures, log: LogFigures | None) -> str:
    body = _failure_groups(manifest.failures, "image", with_page=True)
    if log:
        body += _failure_groups(log.page_failures, "page", with_page=False)
    body = body or '<p class="muted">No failures.</p>'
    return f"<section><h2>Failures by reason</h2>{body}</section>"


def _short(url: str) -> str:
    """What a narrow tile shows of a URL: its path's last part (the whole is its title)."""
    path = urlsplit(url).path
    return path.rstrip("/").rsplit("/", 1)[-1] or path or url


def _page_label(url: str) -> str:
    """A page's path: tiles share the host, shown in the host table."""
    parts = urlsplit(url)
    return parts.path or "/" if parts.scheme.lower() in ("http", "https") else url


def _tile(tile: Tile) -> str:
    if tile.thumbnail:
        picture = f'<img class="thumb" src="{tile.thumbnail}" alt="" decoding="async">'
    else:
        picture = f'<div class="thumb placeholder">{_escape(tile.note)}</div>'
    size = f"{tile.width}&times;{tile.height}" if tile.width and tile.height else "size unknown"
    plural = "s" if tile.other_urls > 1 else ""
    also = f" · +{tile.other_urls} URL{plural}" if tile.other_urls else ""
    page = _link(tile.page, _page_label(tile.page))
    return (
        f'<figure class="tile">{picture}<figcaption class="meta">'
        f'<div class="line">{_link(tile.url, _short(tile.url))}</div>'
        f'<div class="line facts">on {page}</div>'
        f'<div class="facts">{_size(tile.bytes)} · {size} · {_escape(tile.kind)}{also}</div>'
        "</figcaption></figure>"
    )


def _gallery(manifest: ManifestFigures) -> str:
    shown, total = len(manifest.tiles), len(manifest.hashes)
    note = f"{shown:,} of {total:,} distinct files"
    if total > shown:
        note += f"; {total - shown:,} left out (max_thumbnails)"
    if manifest.elsewhere:
        note += f"; {manifest.distinct_elsewhere:,} not in this folder (see Files on other nodes)"
    tiles = "".join(_tile(tile) for tile in manifest.tiles.values())
    return (
        f'<section><h2>Gallery</h2><p class="muted">{note}</p>'
        f'<div class="gallery">{tiles}</div></section>'
    )


def render_report(
    manifest: ManifestFigures, log: LogFigures | None, skipped: int, out: Path, now: datetime
) -> str:
    """The whole page; every string from the manifest or log goes through ``_escape``."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Crawl report: {_escape(out.name)}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>Crawl report</h1><p>{_escape(out)} · generated "
        f"{now.strftime('%Y-%m-%d %H:%M UTC')}</p></header>"
        + _cards(manifest, log)
        + _figures(manifest, log, skipped)
        + _other_nodes(manifest, out)
        + _chart(log)
        + _breakdowns(manifest)
        + _failures(manifest, log)
        + _gallery(manifest)
        + "</main></body></html>\n"
    )


# -- the edge: read, thumbnail, write ----------------------------------------------------------


def read_log(path: Path) -> LogFigures | None:
    if not path.is_file():
        return None
    figures = LogFigures()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            figures.add(parse_line(line))
    return figures


def write_report(
    out: Path, *, max_thumbnails: int = 2000, log: Path | None = None
) -> ReportSummary:
    """Write OUT/report.html from OUT's manifest and progress log (``log``, by default
    OUT/progress.log; without one the page says so and uses the manifest alone).

    Raises StateError when OUT has no manifest. The page is written to a temporary
    name and renamed, so a reader never sees half a report.
    """
    records = manifest_records(out, "report")
    manifest = ManifestFigures(max_tiles=max_thumbnails, locate=lambda path: stored_file(out, path))
    for record in records:
        manifest.add(record)
    for tile in manifest.tiles.values():
        add_thumbnail(tile)
    page = render_report(
        manifest, read_log(log or out / "progress.log"), records.skipped, out, datetime.now(UTC)
    )
    target = out / REPORT_NAME
    partial = target.with_name(f".{REPORT_NAME}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)
    return ReportSummary(
        path=target,
        images=len(manifest.hashes),
        tiles=len(manifest.tiles),
        thumbnails=sum(1 for tile in manifest.tiles.values() if tile.thumbnail),
        left_out=len(manifest.hashes) - len(manifest.tiles),
        failure_groups=len(manifest.failures.counts),
        elsewhere=tuple((node, files) for node, files, _ in manifest.nodes_elsewhere()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.output.report", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=Path("downloads"))
    parser.add_argument("--max-thumbnails", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        print(write_report(args.out, max_thumbnails=args.max_thumbnails).line())
    except CrawlerError as error:
        print(f"crawler: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
