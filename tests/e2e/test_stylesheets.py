"""Style rules count only where their selector matches an element of the page, in a
crawl by real harvester (with its parse workers) and downloader processes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from crawler.output.manifest import MANIFEST_NAME, read_manifest

SHEET = """
.hero { background: url(/img/hero.png) }
.menu > li a.next::after { content: url(/img/arrow.png) }
.nowhere { background: url(/img/unmatched.png) }
.hero:hover { background: url(/img/hover.png) }
.menu li:nth-child(3) { list-style-image: url(/img/third.png) }
@media print { .hero { background: url(/img/print.png) } }
"""
SHOWN = {"hero.png": "/index.html", "arrow.png": "/two.html"}
NOT_SHOWN = ("unmatched.png", "hover.png", "third.png", "print.png", "inline-miss.png")


def style_site(root: Path) -> None:
    (root / "img").mkdir(parents=True)
    (root / "css").mkdir()
    for n, name in enumerate((*SHOWN, *NOT_SHOWN)):
        Image.new("RGB", (30 + n, 20), (40 * n % 256, 90, 160)).save(root / "img" / name)
    (root / "css" / "site.css").write_text(SHEET)
    head = '<link rel="stylesheet" href="/css/site.css">'
    (root / "index.html").write_text(
        f"<html><head>{head}<style>.hero .missing {{ background: url(/img/inline-miss.png) }}"
        '</style></head><body><div class="hero"></div><a href="/two.html">two</a></body></html>'
    )
    (root / "two.html").write_text(
        f'<html><head>{head}</head><body><div class="hero"></div><ul class="menu">'
        '<li><a class="next" href="/">back</a></li><li>second</li></ul></body></html>'
    )


def test_a_crawl_stores_the_images_of_matching_rules_only(cluster, tmp_path):
    site = tmp_path / "site"
    style_site(site)
    cluster.serve_folder(site)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    cluster.downloader("node-a", out)
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}

    base = cluster.site_url.rstrip("/")
    records = read_manifest(out / MANIFEST_NAME)
    assert {r["url"]: (r["outcome"], r["kind"], r["page"]) for r in records} == {
        f"{base}/img/{name}": ("stored", "stylesheet", base + page) for name, page in SHOWN.items()
    }
    gets = cluster.access_log.read_text()
    assert gets.count("GET /css/site.css ") == 1, "the sheet is fetched once per crawl"
    for name in NOT_SHOWN:
        assert f"/img/{name}" not in gets, f"{name}: its rule matches nothing on a screen"
