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

import base64
import html
import io
import math
import shlex
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from PIL import Image, features

from crawler.output.export import manifest_records
from crawler.output.figures import (
    FailureGroups,
    LogFigures,
    ManifestFigures,
    Tile,
    Timeline,
    read_log,
    text_of,
)
from crawler.output.images import ImageFiles
from crawler.stats import CrawlStats
from crawler.storage import TMP_DIR
from crawler.web.verify import PILLOW_FAILURES

REPORT_NAME = "report.html"
THUMBNAIL_BOX = (160, 160)
THUMBNAIL_FORMAT, THUMBNAIL_MIME = (
    ("WEBP", "image/webp") if features.check("webp") else ("PNG", "image/png")
)
TABLE_ROWS = 12
NODES_IN_SUMMARY = 3
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


# -- thumbnails ----------------------------------------------------------------------------


def make_thumbnail(path: str | Path | IO[bytes]) -> tuple[bytes, tuple[int, int]] | None:
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


def add_thumbnail(tile: Tile, images: ImageFiles | None = None) -> None:
    """Fill the tile's thumbnail (and missing dimensions), or say why there is none;
    ``images`` reads the file (by default, from its path)."""
    if tile.file is None:
        tile.note = f"not here: on node {tile.node}"
        return
    if tile.content_type == "image/svg+xml" or (tile.path or "").endswith(".svg"):
        tile.note = "SVG: not rendered"  # a script inside an SVG is not ours to run
        return
    try:
        with images.open(tile.file) if images else open(tile.file, "rb") as handle:
            made = make_thumbnail(handle)
    except OSError:
        made = None
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
    return html.escape(text_of(value), quote=True)


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
        crawl += _render_rows(log)
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


def _render_rows(log: LogFigures) -> list[tuple[str, str]]:
    """What rendering found, and the pages whose scripts may build images or links but
    were not rendered (the first few named: ``--render auto`` would render them)."""
    rows = []
    if log.rendered_pages:
        rows.append(
            (
                "Pages rendered (--render)",
                f"{log.rendered_pages:,}, {log.rendered_images:,} images only the browser found",
            )
        )
    if log.script_pages:
        named = "<br>".join(_link(url) for url in log.script_examples)
        more = "<br>…" if log.script_pages > len(log.script_examples) else ""
        rows.append(
            (
                "Pages whose scripts may build images or links, not rendered",
                f"{log.script_pages:,} (--render auto renders them)<br>{named}{more}",
            )
        )
    return rows


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


def write_report(
    out: Path, *, max_thumbnails: int = 2000, log: Path | None = None, images: str | None = None
) -> ReportSummary:
    """Write OUT/report.html from OUT's manifest and progress log (``log``, by default
    OUT/progress.log; without one the page says so and uses the manifest alone), with
    the stored images read from OUT, or from ``images`` (a folder, or the nodes' object
    store: ``images.py``).

    Raises StateError when OUT has no manifest. The page is written to a temporary
    name and renamed, so a reader never sees half a report.
    """
    records = manifest_records(out, "report")
    files = ImageFiles(out, images)
    manifest = ManifestFigures(max_tiles=max_thumbnails, locate=files.locate)
    for record in records:
        manifest.add(record)
    for tile in manifest.tiles.values():
        add_thumbnail(tile, files)
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
