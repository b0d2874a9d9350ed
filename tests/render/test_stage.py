"""The render stage of fetch_page, with the scripted renderer: what a render adds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crawler.config import CrawlConfig
from crawler.render.base import RenderResult
from crawler.render.double import ScriptedRenderer
from crawler.render.hints import AUTO_FRUITLESS_RENDERS
from crawler.render.stage import RENDERED, RenderStage
from crawler.web.pages import fetch_page
from tests.support.script_site import SCRIPT_PAGES, ScriptSite

CRAWL = CrawlConfig(allow_networks=("127.0.0.1/32",), obey_robots=False)


@pytest.fixture
def site() -> Iterator[ScriptSite]:
    server = ScriptSite()
    yield server
    server.close()


def dom_with(*tags: str) -> str:
    return "<html><body>" + "".join(tags) + "</body></html>"


def test_a_render_adds_only_what_the_static_parse_did_not_find(site: ScriptSite) -> None:
    url = site.url + "/gallery.html"
    renderer = ScriptedRenderer(
        {
            url: RenderResult(
                dom=dom_with(
                    '<img src="/img/static.png">',
                    '<img src="/img/gallery-a.png">',
                    '<a href="/scripted/one.html">one</a>',
                ),
                images=(site.url + "/img/gallery-a.png", site.url + "/img/bg.png"),
            )
        }
    )
    page = fetch_page(url, 0, CRAWL, render=RenderStage("auto", renderer))

    assert [request.url for request in renderer.rendered] == [url]
    assert renderer.rendered[0].html == SCRIPT_PAGES["/gallery.html"].encode()
    assert [(ref.url, ref.kind) for ref in page.images] == [
        (site.url + "/img/static.png", "img_src"),
        (site.url + "/img/gallery-a.png", RENDERED),
        (site.url + "/img/bg.png", RENDERED),
    ]
    assert page.links == [site.url + "/scripted/one.html"]
    assert (page.rendered, page.rendered_images, page.rendered_links) == (True, 2, 1)
    assert site.hits.count("/gallery.html") == 1  # the browser was handed the body


def test_auto_renders_only_pages_with_hints_never_renders_none(site: ScriptSite) -> None:
    renderer = ScriptedRenderer({})
    plain = fetch_page(site.url + "/plain.html", 0, CRAWL, render=RenderStage("auto", renderer))
    assert not plain.rendered and plain.script_hints == ()
    never = fetch_page(site.url + "/gallery.html", 0, CRAWL, render=RenderStage("never", None))
    assert not never.rendered and never.script_hints == ("builds images",)
    assert renderer.rendered == []
    always = fetch_page(site.url + "/plain.html", 0, CRAWL, render=RenderStage("always", renderer))
    assert always.rendered and [r.url for r in renderer.rendered] == [site.url + "/plain.html"]


def test_a_failed_render_keeps_what_the_static_parse_found(site: ScriptSite) -> None:
    renderer = ScriptedRenderer({})  # every render fails
    page = fetch_page(site.url + "/gallery.html", 0, CRAWL, render=RenderStage("auto", renderer))
    assert page.error is None and page.rendered
    assert page.render_error == "render_failed: not scripted"
    assert [ref.url for ref in page.images] == [site.url + "/img/static.png"]


def test_auto_stops_rendering_a_host_whose_renders_find_nothing(site: ScriptSite) -> None:
    url = site.url + "/gallery.html"
    renderer = ScriptedRenderer({url: RenderResult(dom=SCRIPT_PAGES["/gallery.html"])})
    stage = RenderStage("auto", renderer)
    pages = [fetch_page(url, 0, CRAWL, render=stage) for _ in range(AUTO_FRUITLESS_RENDERS + 2)]
    assert [p.rendered for p in pages] == [True] * AUTO_FRUITLESS_RENDERS + [False, False]
    assert [p.render_host_stopped for p in pages].count(True) == 1
    assert pages[AUTO_FRUITLESS_RENDERS - 1].render_host_stopped


def test_rendered_images_go_through_robots_like_any_other(site: ScriptSite) -> None:
    from crawler.web.robots import RobotsCache, RobotsResponse

    robots = RobotsCache(
        "bot", lambda _url: RobotsResponse(200, b"User-agent: *\nDisallow: /img/no")
    )
    url = site.url + "/gallery.html"
    renderer = ScriptedRenderer(
        {url: RenderResult(images=(site.url + "/img/no.png", site.url + "/img/yes.png"))}
    )
    page = fetch_page(url, 0, CRAWL, robots, render=RenderStage("always", renderer))
    assert site.url + "/img/yes.png" in [ref.url for ref in page.images]
    assert [ref.url for ref in page.refused_images] == [site.url + "/img/no.png"]
