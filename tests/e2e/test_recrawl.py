"""A recrawl of a finished crawl after its site changed, by real harvester and
downloader processes: conditional GETs, a 304 reusing what the page referenced, only
new image URLs downloaded, and what is new, changed and gone reported."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from crawler.output.manifest import MANIFEST_NAME, read_manifest


def build(root: Path) -> None:
    (root / "img").mkdir(parents=True)
    for n in range(5):
        Image.new("RGB", (20 + n, 20), (50 * n, 120, 200)).save(root / "img" / f"i{n}.png")
    (root / "index.html").write_text(
        '<img src="/img/i0.png"><a href="/a.html">a</a><a href="/b.html">b</a>'
        '<a href="/c.html">c</a>'
    )
    (root / "a.html").write_text('<img src="/img/i0.png"><img src="/img/i3.png">')
    (root / "b.html").write_text('<img src="/img/i1.png">')
    (root / "c.html").write_text('<img src="/img/i2.png">')


def crawl(cluster, out: Path, node: str, *args: str) -> str:
    cluster.harvester(out, *args)
    cluster.downloader(node, out)
    assert cluster.wait_all(["harvester", node]) == {"harvester": 0, node: 0}
    return cluster.output("harvester")


def test_a_recrawl_fetches_only_what_changed(cluster, tmp_path):
    site = tmp_path / "site"
    build(site)
    cluster.serve_folder(site)
    base = cluster.site_url.rstrip("/")
    out = tmp_path / "downloads"
    crawl(cluster, out, "node-a")
    first = read_manifest(out / MANIFEST_NAME)
    assert sorted(r["url"] for r in first if r["outcome"] == "stored") == [
        f"{base}/img/i{n}.png" for n in range(4)
    ]

    # The site changes: b.html drops i1 for the new i4, c.html is gone.
    (site / "b.html").write_text('<img src="/img/i4.png"><p>new</p>')
    (site / "c.html").unlink()
    cluster.access_log.write_text("")
    output = crawl(cluster, out, "node-b", "--recrawl")

    gets = {}
    for line in cluster.access_log.read_text().splitlines():
        _method, path, status, _size = line.split()
        gets.setdefault(path, []).append(status)
    assert gets["/index.html"] == ["304"]
    assert gets["/a.html"] == ["304"], "an unchanged page answers 304"
    assert gets["/b.html"] == ["200"]
    assert gets["/c.html"] == ["404"]
    images = {path: statuses for path, statuses in gets.items() if path.startswith("/img/")}
    assert images == {"/img/i4.png": ["200"]}, "only the new image URL is downloaded"
    statuses = [status for statuses in gets.values() for status in statuses]
    assert statuses.count("304") == 2

    report = json.loads((out / "recrawl.json").read_text())
    assert report["recrawl"] == 1
    assert report["pages"] == {"not_modified": 2, "changed": 1, "gone": 1}
    assert report["changed_pages"] == [f"{base}/b.html"]
    assert report["gone_pages"] == [f"{base}/c.html"]
    assert report["new_images"] == [f"{base}/img/i4.png"]
    assert report["gone_images"] == [f"{base}/img/i1.png", f"{base}/img/i2.png"]
    assert "recrawl 1: pages 2 not modified, 1 changed, 0 unchanged, 0 new, 1 gone" in output
    assert "1 new images, 2 images no page references any more" in output

    records = read_manifest(out / MANIFEST_NAME)
    new = [r for r in records if r not in first]
    assert [(r["url"], r["outcome"]) for r in new] == [(f"{base}/img/i4.png", "stored")]
