"""Pages and images that only sitemaps list, found by real harvester and downloader
processes: robots.txt names a sitemap index, which names a gzip sitemap of pages and
an image sitemap."""

from __future__ import annotations

import gzip
from pathlib import Path

from PIL import Image

from crawler.output.manifest import MANIFEST_NAME, read_manifest
from crawler.output.progress import parse_line

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
IMAGE_NS = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'


def sitemap_site(root: Path) -> dict[str, str]:
    """A site whose index links nowhere; its other pages and one image are listed only
    in sitemaps. Returns {what: url path}."""
    (root / "img").mkdir(parents=True)
    for n, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (40 + n, 30), colour).save(root / "img" / f"i{n}.png")
    (root / "index.html").write_text("<html><body><p>nothing linked</p></body></html>")
    (root / "hidden").mkdir()
    (root / "hidden" / "a.html").write_text('<img src="/img/i0.png">')
    (root / "hidden" / "b.html").write_text('<img src="/img/i1.png">')
    (root / "private").mkdir()
    (root / "private" / "c.html").write_text('<img src="/img/i1.png">')
    (root / "robots.txt").write_text(
        "User-agent: *\nDisallow: /private/\nSitemap: /maps/index.xml\n"
    )
    (root / "maps").mkdir()
    (root / "maps" / "index.xml").write_text(
        f'<?xml version="1.0"?><sitemapindex {NS}>'
        "<sitemap><loc>/maps/pages.xml.gz</loc></sitemap>"
        "<sitemap><loc>/maps/images.xml</loc></sitemap></sitemapindex>"
    )
    pages = "".join(
        f"<url><loc>{path}</loc></url>"
        for path in ("/hidden/a.html", "/hidden/b.html", "/private/c.html")
    )
    (root / "maps" / "pages.xml.gz").write_bytes(
        gzip.compress(f'<?xml version="1.0"?><urlset {NS}>{pages}</urlset>'.encode())
    )
    (root / "maps" / "images.xml").write_text(
        f'<?xml version="1.0"?><urlset {NS} {IMAGE_NS}><url><loc>/</loc>'
        "<image:image><image:loc>/img/i2.png</image:loc></image:image></url></urlset>"
    )
    return {"a": "/hidden/a.html", "b": "/hidden/b.html", "c": "/private/c.html"}


def crawl(cluster, tmp_path: Path, name: str, *args: str, node: bool = True):
    """Run the harvester (and a node) to the end: (manifest, log events, its output).
    Without a node, the crawl must have no images: a node that came after the
    harvester finished would wait for it for ever."""
    out = tmp_path / name
    cluster.harvester(out, *args)
    names = ["harvester"]
    if node:
        cluster.downloader(f"node-{name}", out)
        names.append(f"node-{name}")
    assert cluster.wait_all(names) == dict.fromkeys(names, 0)
    events = [parse_line(line) for line in (out / "progress.log").read_text().splitlines()]
    return read_manifest(out / MANIFEST_NAME), events, cluster.output("harvester")


def serve(cluster, tmp_path: Path) -> None:
    site = tmp_path / "site"
    sitemap_site(site)
    cluster.serve_folder(site)


def test_pages_and_images_only_sitemaps_list_are_crawled(cluster, tmp_path):
    serve(cluster, tmp_path)
    records, events, output = crawl(cluster, tmp_path, "on")
    base = cluster.site_url.rstrip("/")
    stored = {r["url"]: r for r in records if r["outcome"] == "stored"}
    assert set(stored) == {f"{base}/img/i{n}.png" for n in range(3)}
    assert stored[f"{base}/img/i2.png"]["kind"] == "sitemap"  # from the image sitemap
    assert stored[f"{base}/img/i0.png"]["page"] == f"{base}/hidden/a.html"
    fetched = {e["url"] for e in events if e.get("event") == "page_fetched"}
    assert {f"{base}/hidden/a.html", f"{base}/hidden/b.html"} <= fetched
    assert f"{base}/private/c.html" not in fetched  # robots.txt disallows it
    read = {e["url"]: e for e in events if e.get("event") == "sitemap_read"}
    assert set(read) == {
        f"{base}/maps/index.xml",
        f"{base}/maps/pages.xml.gz",
        f"{base}/maps/images.xml",
    }
    assert read[f"{base}/maps/pages.xml.gz"]["new_pages"] == "3"
    assert "pages found in sitemaps" in output
    gets = cluster.access_log.read_text()
    assert "GET /maps/pages.xml.gz 200" in gets and "GET /sitemap.xml" not in gets


def test_no_sitemaps_reads_none(cluster, tmp_path):
    serve(cluster, tmp_path)
    # Without the sitemaps nothing links to an image: no node is needed.
    records, events, _ = crawl(cluster, tmp_path, "off", "--no-sitemaps", node=False)
    assert records == []
    assert not [e for e in events if e.get("event", "").startswith("sitemap")]
    assert "/maps/" not in cluster.access_log.read_text()
