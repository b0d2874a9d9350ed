"""Debian's headless Chromium as the renderer, on pages served on 127.0.0.1.

The browser gets every script-made image and link of the site, reaches nothing the
crawl's address policy forbids whatever a script tries, and a page that never finishes
(a request that hangs, a script that never returns) is bounded by ``render_timeout``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from crawler.config import CrawlConfig, RenderConfig
from crawler.errors import ConfigError
from crawler.render.base import RenderRequest
from crawler.render.chromium import ChromiumRenderer, find_chromium, pss_bytes
from crawler.web.extract import extract_page
from crawler.web.pages import fetch_resource
from tests.support.hostile_server import HostileServer
from tests.support.script_site import RENDERED_IMAGES, SCRIPT_PAGES, ScriptSite

TIMEOUT = 3.0
CRAWL = CrawlConfig(allow_networks=("127.0.0.1/32",), obey_robots=False)


@pytest.fixture(scope="module")
def forbidden() -> Iterator[HostileServer]:
    server = HostileServer("127.0.0.2")  # loopback, but outside the allowed network
    yield server
    server.close()


@pytest.fixture(scope="module")
def site(forbidden: HostileServer) -> Iterator[ScriptSite]:
    server = ScriptSite(forbidden=forbidden.url)
    yield server
    server.close()


@pytest.fixture(scope="module")
def renderer() -> Iterator[ChromiumRenderer]:
    settings = RenderConfig(render_timeout=TIMEOUT, render_pages_per_browser=4)
    chromium = ChromiumRenderer(settings, lambda url, ref: fetch_resource(url, CRAWL, ref))
    yield chromium
    chromium.close()


def render(renderer: ChromiumRenderer, site: ScriptSite, path: str):
    body = SCRIPT_PAGES[path].replace("FORBIDDEN_ORIGIN", site.forbidden).encode()
    return renderer.render(RenderRequest(site.url + path, body, "text/html; charset=utf-8"))


@pytest.mark.parametrize("path", sorted(RENDERED_IMAGES))
def test_every_script_made_image_is_requested_or_in_the_dom(renderer, site, path) -> None:
    result = render(renderer, site, path)
    assert result.error is None
    found = set(result.images) | {
        ref.url for ref in extract_page(result.dom.encode(), site.url + path).images
    }
    assert found >= {site.url + image for image in RENDERED_IMAGES[path]}
    assert path not in site.hits  # the browser was handed the body: no second GET


def test_links_a_script_builds_are_in_the_rendered_dom(renderer, site) -> None:
    result = render(renderer, site, "/menu.html")
    links = extract_page(result.dom.encode(), site.url + "/menu.html").links
    assert links == [site.url + "/scripted/one.html", site.url + "/scripted/two.html"]


def test_a_script_cannot_make_the_browser_reach_a_forbidden_address(
    renderer, site, forbidden
) -> None:
    result = render(renderer, site, "/forbidden.html")
    time.sleep(0.3)  # anything in flight would have arrived
    assert forbidden.hits == []
    blocked = " ".join(result.blocked)
    for what in ("secret-fetch", "secret-script.js", "secret-frame.html", "secret-beacon"):
        assert what in blocked
    # The image was asked for and answered with a pixel here: the downloaders, which
    # apply the same policy, decide on it; the browser never fetched it.
    assert forbidden.url + "/secret-image.png" in result.images


@pytest.mark.parametrize("path", ["/never-ends.html", "/busy.html"])
def test_a_page_that_never_finishes_is_bounded_and_the_next_one_renders(
    renderer, site, path
) -> None:
    started = time.monotonic()
    result = render(renderer, site, path)
    elapsed = time.monotonic() - started
    assert result.error == "render_timeout"
    assert elapsed < TIMEOUT + 6
    assert render(renderer, site, "/gallery.html").error is None


def test_the_browser_is_restarted_after_its_pages_and_its_memory_is_measurable(
    renderer, site
) -> None:
    before = renderer.launches
    for _ in range(5):
        assert render(renderer, site, "/slider.html").error is None
    assert renderer.launches > before
    assert pss_bytes(renderer.browser_pids()) > 10 * 1024 * 1024


def test_without_chromium_the_error_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt-get install chromium"):
        find_chromium("")
    with pytest.raises(ConfigError, match="not an executable"):
        find_chromium("/nonexistent/chromium")


def test_the_browser_runs_in_a_session_of_its_own_so_ctrl_c_is_the_harvesters(
    renderer, site
) -> None:
    assert render(renderer, site, "/plain.html").error is None
    pids = renderer.browser_pids()
    assert pids
    assert {os.getsid(pid) for pid in pids}.isdisjoint({os.getsid(0)})


def test_a_reused_tab_carries_nothing_from_the_page_before(renderer, site) -> None:
    assert render(renderer, site, "/gallery.html").error is None
    plain = render(renderer, site, "/plain.html")
    assert plain.images == (site.url + "/img/plain.png",)
    assert "gallery-a.png" not in plain.dom
