"""``--render`` in the crawl loop, with the scripted renderer (no browser): what auto
renders, that links only a render found are crawled and its images recorded, and
what a crawl without rendering says it may have missed (summary, log and report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import Config, CrawlConfig, OutputConfig, QueueConfig, RenderConfig
from crawler.harvest.harvester import EXIT_FINISHED, Harvester
from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from crawler.output.report import write_report
from crawler.render.base import RenderResult
from crawler.render.double import ScriptedRenderer
from tests.harvest.test_crawl_loop import ManualClock, run_with_node
from tests.support.script_site import RENDERED_IMAGES, ScriptSite

_count = iter(range(1000))


@pytest.fixture
def site():
    server = ScriptSite()
    yield server
    server.close()


def scripted(site: ScriptSite) -> ScriptedRenderer:
    """What a browser shows of each page: every image of RENDERED_IMAGES in the DOM,
    and the menu's links."""
    results = {}
    for path, images in RENDERED_IMAGES.items():
        tags = "".join(f'<img src="{image}">' for image in images)
        if path == "/menu.html":
            tags += '<a href="/scripted/one.html">1</a><a href="/scripted/two.html">2</a>'
        results[site.url + path] = RenderResult(dom=f"<html><body>{tags}</body></html>")
    return ScriptedRenderer(results)


def run_crawl(site: ScriptSite, out: Path, mode: str, renderer=None, capsys=None):
    listen = f"memory://render-crawl-{next(_count)}"
    config = Config(
        crawl=CrawlConfig(
            obey_robots=False,
            parse_processes=0,
            page_workers=2,
            allow_networks=("127.0.0.1/32",),
            sitemaps=False,
        ),
        queue=QueueConfig(listen=listen, linger_seconds=0.0),
        output=OutputConfig(out=str(out)),
        render=RenderConfig(render=mode),
    )
    harvester = Harvester(
        config, [site.url + "/index.html"], b"", clock=ManualClock(), renderer=renderer
    )
    code = run_with_node(harvester, listen, harvester.clock)
    assert code == EXIT_FINISHED
    events = [parse_line(line) for line in (out / "progress.log").read_text().splitlines()]
    pages = {e["url"]: e for e in events if e.get("event") == "page_fetched"}
    return read_manifest(out / "manifest.jsonl"), pages


def test_auto_renders_the_pages_whose_scripts_build_images_and_follows_their_links(
    site, tmp_path, capsys
) -> None:
    renderer = scripted(site)
    manifest, pages = run_crawl(site, tmp_path / "out", "auto", renderer)

    rendered = sorted(request.url.removeprefix(site.url) for request in renderer.rendered)
    assert rendered == [
        "/fetched.html",
        "/gallery.html",
        "/lazy.html",
        "/menu.html",
        "/slider.html",
    ]
    # The pages only the rendered menu links to were crawled, their images recorded.
    assert site.url + "/scripted/one.html" in pages and site.url + "/scripted/two.html" in pages
    urls = {record["url"] for record in manifest}
    expected = {site.url + image for images in RENDERED_IMAGES.values() for image in images}
    assert urls == expected
    kinds = {record["url"]: record["kind"] for record in manifest}
    assert kinds[site.url + "/img/gallery-a.png"] == "rendered"
    assert kinds[site.url + "/img/static.png"] == "img_src"
    gallery = pages[site.url + "/gallery.html"]
    assert (gallery["rendered"], gallery["rendered_images"]) == ("1", "5")
    assert "rendered" not in pages[site.url + "/plain.html"]
    summary = capsys.readouterr().out
    assert "5 pages rendered (" in summary and "only the browser found" in summary
    assert renderer.closed


def test_never_renders_nothing_and_names_the_pages_that_may_miss_images(
    site, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    manifest, pages = run_crawl(site, out, "never")

    assert {record["url"] for record in manifest} == {
        site.url + "/img/static.png",
        site.url + "/img/plain.png",
    }
    hinted = sorted(url for url, event in pages.items() if event.get("scripts"))
    assert [url.removeprefix(site.url) for url in hinted] == [
        "/fetched.html",
        "/gallery.html",
        "/lazy.html",
        "/menu.html",
        "/slider.html",
    ]
    assert pages[site.url + "/menu.html"]["scripts"] == "builds images,builds links"
    summary = capsys.readouterr().out
    assert "5 pages have scripts that may build images or links (" in summary
    assert "--render auto would render them" in summary
    write_report(out)
    report = (out / "report.html").read_text()
    assert "Pages whose scripts may build images or links, not rendered" in report
    assert "5 (--render auto renders them)" in report
