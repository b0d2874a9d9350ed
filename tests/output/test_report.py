"""Tests for crawler.output.report: the HTML page built from a hand-made output folder.

``build_out`` writes real image files (and broken ones) with Pillow, a manifest with
hostile strings and a torn last line, and a progress log; test_export and the browser
test use it too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from crawler.errors import StateError
from crawler.output.figures import EXAMPLES_PER_REASON, LogFigures, Timeline, _host
from crawler.output.progress import parse_line
from crawler.output.report import THUMBNAIL_BOX, make_thumbnail, write_report
from crawler.records import error_code

HOST = "http://h.test"
HOSTILE_URL = HOST + '/img/"><script>alert(1)</script>.jpg'
HOSTILE_PAGE = "javascript:alert(1)"
HOSTILE_ERROR = '"><img src=x onerror=alert(3)>: boom'
COMMA_URL = HOST + '/img/a,b "quoted"\nnewline.webp'
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(2)</script></svg>'
# Distinct colors, so that a thumbnail (and the browser's rendering of it) can be told apart.
RED, GREEN, BLUE, YELLOW, MAGENTA = (
    (220, 30, 30),
    (30, 200, 60),
    (30, 60, 220),
    (240, 220, 0),
    (200, 0, 200),
)
THUMBNAILS, PLACEHOLDERS = 4, 2  # jpeg, png, gif, webp; svg and corrupt
IMAGE_404S = 7
LOG = """\
ts=2026-11-25T15:02:40.000Z event=crawl_started seeds="{host}/ {host}/b" robots=obeyed
ts=2026-11-25T15:02:40.100Z event=page_fetched url={host}/ status=200 images=9 links=2
ts=2026-11-25T15:02:40.200Z event=page_failed url="{host}/<b>gone</b>" status=404 error=http_404
ts=2026-11-25T15:02:40.500Z event=stored url={host}/img/red.jpg bytes=100 node=n1
ts=2026-11-25T15:02:41.000Z event=stored url={host}/img/green.png bytes=100 node=n1
ts=2026-11-25T15:02:41.500Z event=stored url={host}/img/blue.gif bytes=100 node=n2
ts=2026-11-25T15:02:42.000Z event=totals pages=1 page_errors=1 stored=3 failed=0 bytes=300
ts=2026-11-25T15:02:44.000Z event=crawl_finished seconds=4 pages=1 page_errors=1 stored=7
"""


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), color) for color in (BLUE, YELLOW)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _record(url: str, page: str = HOST + "/", **fields) -> dict:
    base = {"url": url, "page": page, "kind": "img_src", "attempts": 1, "node": "n1"}
    return base | {"elapsed": 0.01} | fields


def _store(out: Path, url: str, data: bytes, ext: str, **fields) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    relative = f"h.test/{sha[:2]}/{sha}.{ext}"
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    (out / relative).write_bytes(data)
    return _record(url, outcome="stored", status=200, error=None, path=relative, sha256=sha,
                   bytes=len(data), **fields)  # fmt: skip


def _failed(url: str, error: str, status: int | None = 404) -> dict:
    return _record(url, HOST + "/b", outcome="failed", status=status, error=error, bytes=0,
                   path=None, sha256=None, width=None, height=None)  # fmt: skip


def build_out(out: Path, with_log: bool = True) -> Path:
    """An output folder as a crawl leaves it, with every case the report must survive."""
    out.mkdir(parents=True, exist_ok=True)
    jpeg = _encode(Image.new("RGB", (300, 200), RED), "JPEG", quality=90)
    rgba = Image.new("RGBA", (120, 80), (*GREEN, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    records = [
        # A hostile URL, found on a javascript: "page", then the same content elsewhere.
        _store(out, HOSTILE_URL, jpeg, "jpg", width=300, height=200, content_type="image/jpeg",
               page=HOSTILE_PAGE),
        _store(out, HOST + "/img/red.jpg", jpeg, "jpg", width=300, height=200,
               content_type="image/jpeg"),
        # An older manifest without dimensions: export reads them from the file.
        _store(out, HOST + "/img/green.png", _encode(rgba, "PNG"), "png", width=None,
               height=None, content_type="image/png", kind="srcset", node="n2"),
        _store(out, HOST + "/img/blue.gif", _animated_gif(), "gif", width=40, height=30,
               content_type="image/gif", kind="lazy", node="n2"),
        _store(out, COMMA_URL, _encode(Image.new("RGB", (64, 64), MAGENTA), "WEBP"), "webp",
               width=64, height=64, content_type="image/webp"),
        _store(out, HOST + "/img/logo.svg", SVG, "svg", width=None, height=None,
               content_type="image/svg+xml"),
        _store(out, HOST + "/img/broken.png", b"\x89PNG\r\n\x1a\n not really", "png",
               width=None, height=None, content_type="image/png"),
    ]  # fmt: skip
    records += [_failed(f"{HOST}/img/missing-{i}.png", "http_404") for i in range(IMAGE_404S)]
    records.append(_failed(HOST + "/img/slow.jpg", "connection_error: refused", status=None))
    records.append(_failed(HOSTILE_URL, HOSTILE_ERROR, status=None) | {"page": HOSTILE_PAGE})
    lines = [json.dumps(record, sort_keys=True) for record in records]
    torn = json.dumps(_failed(HOST + "/img/torn.png", "http_500"))[:40]
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n" + torn, encoding="utf-8")
    if with_log:
        (out / "progress.log").write_text(LOG.format(host=HOST), encoding="utf-8")
    return out


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return build_out(tmp_path / "out")


def thumbnails_of(page: str) -> list[Image.Image]:
    uris = re.findall(r'<img class="thumb" src="data:image/\w+;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(uri))) for uri in uris]


# -- the page ------------------------------------------------------------------------------


def test_report_summary_counts_what_was_written(out: Path):
    summary = write_report(out)
    assert summary.path == out / "report.html"
    assert (summary.images, summary.tiles, summary.left_out) == (6, 6, 0)
    assert summary.thumbnails == THUMBNAILS
    assert summary.failure_groups == 3
    assert "6 of 6 images shown" in summary.line()


def test_gallery_has_one_tile_per_distinct_file(out: Path):
    page = write_report(out).path.read_text()
    assert page.count('<figure class="tile">') == THUMBNAILS + PLACEHOLDERS
    assert page.count('<img class="thumb"') == THUMBNAILS
    assert "SVG: not rendered" in page
    assert "cannot be read" in page
    assert "+1 URL<" in page  # the JPEG is also at the hostile URL


def test_thumbnails_are_small_real_images(out: Path):
    thumbnails = thumbnails_of(write_report(out).path.read_text())
    assert len(thumbnails) == THUMBNAILS
    for thumbnail in thumbnails:
        thumbnail.load()
        assert thumbnail.width <= THUMBNAIL_BOX[0] and thumbnail.height <= THUMBNAIL_BOX[1]
    centers = [thumbnail.convert("RGB").getpixel((10, 10)) for thumbnail in thumbnails]
    # The animated GIF shows its first frame (blue), not its second (yellow).
    for color in (RED, GREEN, BLUE, MAGENTA):
        assert any(all(abs(a - b) < 40 for a, b in zip(c, color, strict=True)) for c in centers)
    assert any(thumbnail.mode == "RGBA" for thumbnail in thumbnails)  # the PNG's alpha


def test_hostile_strings_are_escaped(out: Path):
    page = write_report(out).path.read_text()
    assert "<script" not in page.lower()
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript:' not in page.lower()
    assert "javascript:alert(1)</span>" in page  # shown, as text
    assert "&lt;b&gt;gone&lt;/b&gt;" in page  # from the log
    for href in re.findall(r'href="([^"]*)"', page):
        assert href.startswith(("http://", "https://")), href


def test_page_loads_nothing_from_the_network(out: Path):
    page = write_report(out).path.read_text()
    assert re.search(r"""(src|href)=["']?(https?:)?//""", page.replace('href="http', "")) is None
    assert "url(" not in page
    assert "<link" not in page
    assert "@import" not in page
    assert re.findall(r'src="([^"]*)"', page) and all(
        src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', page)
    )
    assert "Content-Security-Policy" in page


def test_failures_are_grouped_by_reason(out: Path):
    page = write_report(out).path.read_text()
    assert f'http_404 <span class="n">{IMAGE_404S} images</span>' in page
    assert 'connection_error <span class="n">1 image</span>' in page
    assert 'http_404 <span class="n">1 page</span>' in page
    shown = set(re.findall(r"/img/missing-\d\.png", page))
    assert len(shown) == EXAMPLES_PER_REASON


def test_figures_come_from_log_and_manifest(out: Path):
    page = write_report(out).path.read_text()
    assert '<svg class="chart"' in page
    assert page.count('<rect class="bar"') >= 3
    assert f'href="{HOST}/b"' in page  # second seed
    assert "2026-11-25 15:02:40 UTC" in page and "2026-11-25 15:02:44 UTC" in page
    assert "<td class='wrap'>4.0 s</td>" in page
    assert "<td class='wrap'>1 / 1</td>" in page  # pages fetched / failed
    assert "<td class='wrap'>7 / 9</td>" in page  # stored / failed
    assert "Manifest lines skipped" in page


def test_report_without_log_uses_the_manifest(tmp_path: Path):
    out = build_out(tmp_path / "out", with_log=False)
    page = write_report(out).path.read_text()
    assert "none found" in page
    assert "No progress log." in page
    assert page.count('<figure class="tile">') == THUMBNAILS + PLACEHOLDERS


def test_max_thumbnails_leaves_the_rest_out(out: Path):
    summary = write_report(out, max_thumbnails=2)
    assert (summary.tiles, summary.left_out) == (2, 4)
    assert "4 left out" in summary.path.read_text()


def test_missing_manifest_is_a_state_error(tmp_path: Path):
    with pytest.raises(StateError, match=r"no manifest\.jsonl in .*: nothing to report"):
        write_report(tmp_path)


def test_large_manifest_keeps_bounded_state(tmp_path: Path):
    lines = (
        json.dumps(_record(f"{HOST}/{i}.png", outcome="stored", sha256=f"{i:064x}", bytes=10))
        for i in range(20_000)
    )
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    summary = write_report(tmp_path, max_thumbnails=10)
    assert (summary.images, summary.tiles, summary.left_out) == (20_000, 10, 19_990)
    assert summary.path.stat().st_size < 100_000


# -- the parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("http_404", "http_404"),
        ("connection_error: [Errno 111] refused", "connection_error"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_failure_reason(error, reason):
    assert error_code(error) == reason


@pytest.mark.parametrize(
    "url",
    ["http://h.test/a/b?c#d", "https://user@h.test:8443", "http://h.test?q=1", "http://[::1]:80/x"],
)
def test_host_is_the_netloc(url):
    assert _host(url) == urlsplit(url).netloc


def test_throughput_spans_the_log_and_falls_back_to_totals():
    log = LogFigures()
    for line in (
        "ts=2026-11-25T15:00:00.000Z event=crawl_started seeds=http://h.test/",
        "ts=2026-11-25T15:00:10.000Z event=totals stored=50",
        "ts=2026-11-25T15:00:20.000Z event=totals stored=80",
        "ts=2026-11-25T15:01:00.000Z event=crawl_finished stored=80",
    ):
        log.add(parse_line(line))
    chart, source = log.throughput()
    assert source == "periodic totals"
    assert sum(chart.counts) == 80
    assert len(chart.counts) * chart.width >= 60  # up to the end of the log
    assert log.duration == 60


def test_timeline_widens_without_losing_counts():
    timeline = Timeline(origin=100.0, max_bins=10)
    for second in range(30):
        timeline.add(100.0 + second, count=2)
    assert len(timeline.counts) <= 10
    assert sum(timeline.counts) == 60
    assert timeline.width == 10
    coarse = timeline.coarsened(2)
    assert len(coarse.counts) <= 2 and sum(coarse.counts) == 60


def test_make_thumbnail_refuses_unreadable_files(tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    assert make_thumbnail(broken) is None


# -- a crawl whose downloader nodes ran on other machines --------------------------------

FAR_NODES = ("far-a", "far-b<script>")


def build_multi_machine(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The harvester's OUT, holding the manifest and its own node's files only, and the
    ``--out`` folder of each downloader node that ran on another machine."""
    out = tmp_path / "harvester" / "out"
    out.mkdir(parents=True)
    nodes = {node: tmp_path / f"machine-{i}" / "images" for i, node in enumerate(FAR_NODES)}
    far_a, far_b = FAR_NODES
    stored_by = [
        ("n1", out, RED),
        (far_a, nodes[far_a], GREEN),
        (far_a, nodes[far_a], BLUE),
        (far_b, nodes[far_b], YELLOW),
    ]
    records = [
        _store(folder, f"{HOST}/img/{i}.png", _encode(Image.new("RGB", (20, 20), color), "PNG"),
               "png", width=20, height=20, content_type="image/png", node=node)
        for i, (node, folder, color) in enumerate(stored_by)
    ]  # fmt: skip
    records.append(_failed(HOST + "/img/gone.png", "http_404") | {"node": "far-a"})
    lines = [json.dumps(record) for record in records]
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, nodes


def stored_bytes(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*.png"))


def test_files_on_other_machines_are_counted_apart_and_named_by_node(tmp_path: Path):
    out, nodes = build_multi_machine(tmp_path)
    summary = write_report(out)
    page = summary.path.read_text()
    assert summary.elsewhere == (("far-a", 2), (FAR_NODES[1], 1))
    assert (summary.images, summary.thumbnails) == (4, 1)

    # The figures claim only the bytes that are really under OUT.
    here, far = stored_bytes(out), sum(stored_bytes(folder) for folder in nodes.values())
    assert f"<th>Files in this folder</th><td class='wrap'>1 file, {here:,} bytes" in page
    assert f"<th>Files not in this folder</th><td class='wrap'>3 files, {far:,} bytes" in page
    assert "on disk" not in page and "file missing" not in page
    assert "<b>3</b><span>not in this folder</span>" in page

    # Each file it cannot read is named with the node that holds it, and how to gather them.
    assert "<td class='wrap'>far-a</td><td class='n'>2</td>" in page
    assert "<td class='wrap'>far-b&lt;script&gt;</td><td class='n'>1</td>" in page
    assert "<script" not in page
    assert page.count("not here: on node far-a") == 2
    assert page.count("not here: on node far-b&lt;script&gt;") == 1
    assert f"rsync -a --exclude .tmp NODEHOST:DIR/ {out}/" in page
    assert "content-addressed names never collide" in page

    line = summary.line()
    assert "\n" not in line
    assert f"3 files are not in {out}: 2 on node far-a, 1 on node far-b<script>; " in line
    assert f"copy each node's --out folder into {out}, e.g. rsync -a" in line


def test_gathering_the_nodes_folders_into_out_completes_the_report(tmp_path: Path):
    out, nodes = build_multi_machine(tmp_path)
    for folder in nodes.values():  # what `rsync -a NODEHOST:DIR/ OUT/` does
        shutil.copytree(folder, out, dirs_exist_ok=True)
    summary = write_report(out)
    page = summary.path.read_text()
    assert summary.elsewhere == ()
    assert (summary.images, summary.thumbnails) == (4, 4)
    assert "not in" not in summary.line()
    assert f"Files in this folder</th><td class='wrap'>4 files, {stored_bytes(out):,} bytes" in page
    assert "Files on other nodes" not in page and "not here" not in page


def test_many_nodes_elsewhere_keep_the_summary_line_short(tmp_path: Path):
    records = (
        _record(f"{HOST}/{i}.png", outcome="stored", sha256=f"{i:064x}", bytes=10)
        for i in range(50)
    )
    lines = (
        json.dumps(record | {"path": f"h.test/{i}.png", "node": f"node-{i % 5}"})
        for i, record in enumerate(records)
    )
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    line = write_report(tmp_path).line()
    assert "50 files are not in" in line
    assert "10 on node node-0, 10 on node node-1, 10 on node node-2, 20 on 2 more nodes;" in line
