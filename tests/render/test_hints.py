"""Which pages need a browser: script hints read from the static parse, auto's payoff."""

from __future__ import annotations

from crawler.render.hints import (
    APP_SHELL,
    AUTO_FRUITLESS_RENDERS,
    BUILDS_IMAGES,
    BUILDS_LINKS,
    IMAGE_LIBRARY,
    LOADS_CONTENT,
    AutoRender,
    Script,
    script_hints,
    should_render,
)
from crawler.web.extract import extract_page
from tests.support.script_site import SCRIPT_PAGES

URL = "http://site.test/page.html"


def hints_of(html: str) -> tuple[str, ...]:
    return extract_page(html.encode(), URL, "text/html; charset=utf-8").script_hints


def test_script_made_galleries_sliders_menus_and_fetched_lists_are_named() -> None:
    assert hints_of(SCRIPT_PAGES["/gallery.html"]) == (BUILDS_IMAGES,)
    assert hints_of(SCRIPT_PAGES["/lazy.html"]) == (BUILDS_IMAGES,)
    assert hints_of(SCRIPT_PAGES["/slider.html"]) == (BUILDS_IMAGES,)
    assert hints_of(SCRIPT_PAGES["/menu.html"]) == (BUILDS_IMAGES, BUILDS_LINKS)
    assert BUILDS_IMAGES in hints_of(SCRIPT_PAGES["/fetched.html"])
    assert LOADS_CONTENT in hints_of(SCRIPT_PAGES["/fetched.html"])


def test_pages_whose_scripts_build_nothing_have_no_hints() -> None:
    assert hints_of(SCRIPT_PAGES["/plain.html"]) == ()  # an analytics data layer
    assert hints_of(SCRIPT_PAGES["/index.html"]) == ()  # no script at all
    loader = "<script>var s=document.createElement('script');s.src='/a.js';"
    loader += "document.head.appendChild(s)</script><img src=a.png>"
    assert hints_of(loader) == ()  # a script loader, not an image
    data = '<script type="application/ld+json">{"image": "a.jpg", "x": "<img src=b.jpg>"}'
    assert hints_of(data + "</script>") == ()  # JSON is data, not code


def test_image_libraries_are_known_by_their_file_name_and_app_shells_by_their_mount() -> None:
    swiper = '<script src="/js/swiper-bundle.min.js"></script><img src=a.png>'
    assert hints_of(swiper) == (IMAGE_LIBRARY,)
    assert hints_of('<div id="root"></div><script type=module src="/assets/i-4f.js"></script>') == (
        APP_SHELL,
    )
    full = '<div id="root"><a href=a>a</a><a href=b>b</a><img src=c.png></div><script src=x.js>'
    assert hints_of(full + "</script>") == ()  # rendered on the server: nothing missing
    assert hints_of('<div id="root"></div>') == ()  # no script, nothing to run


def test_script_hints_read_a_bounded_prefix_of_each_script() -> None:
    late = Script(text=" " * 70_000 + "document.createElement('img')")
    assert script_hints([late], (), 0, 0) == ()
    assert script_hints([Script(text="x.innerHTML = '<a href=\"/b\">b</a>'")], (), 1, 1) == (
        BUILDS_LINKS,
    )


def test_should_render_follows_the_mode() -> None:
    assert not should_render("never", (BUILDS_IMAGES,))
    assert should_render("auto", (BUILDS_IMAGES,))
    assert not should_render("auto", ())
    assert should_render("always", ())


def test_auto_stops_a_host_after_fruitless_renders_and_only_that_host() -> None:
    auto = AutoRender()
    hints = (BUILDS_IMAGES,)
    stopped = [auto.rendered("a.test", found_new=False) for _ in range(AUTO_FRUITLESS_RENDERS)]
    assert stopped == [False] * (AUTO_FRUITLESS_RENDERS - 1) + [True]
    assert not auto.wanted("a.test", hints)
    assert auto.wanted("b.test", hints)
    assert not auto.wanted("b.test", ())
    assert not auto.rendered("a.test", found_new=True)  # stopped stays stopped


def test_a_render_that_pays_resets_the_count() -> None:
    auto = AutoRender(fruitless_limit=2)
    assert not auto.rendered("a.test", found_new=False)
    assert not auto.rendered("a.test", found_new=True)
    assert not auto.rendered("a.test", found_new=False)
    assert auto.wanted("a.test", (BUILDS_IMAGES,))
    assert auto.rendered("a.test", found_new=False)
