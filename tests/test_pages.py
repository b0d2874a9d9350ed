"""Fetching a page with its style sheets, against a real server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import CrawlConfig
from crawler.css import import_urls
from crawler.demosite import serve
from crawler.pages import StylesheetCache, fetch_page
from tests.e2e.cluster import free_port

CONFIG = CrawlConfig(allow_private=True)

FILES = {
    "a/page.html": (
        '<html><head><link rel="stylesheet" href="../css/main.css">'
        '<link rel="alternate stylesheet" href="../css/alt.css">'
        '<link rel="stylesheet" href="../css/missing.css"></head>'
        '<body><img src="../img/inline.png"></body></html>'
    ),
    "a/other.html": '<link rel="stylesheet" href="/css/main.css"><p>same sheet again</p>',
    "css/main.css": (
        '@import url("parts/more.css");\n'
        ".hero { background: url(../img/hero.png) }\n"
        '.logo { background-image: url("/img/inline.png") }\n'
        "@font-face { font-family: x; src: url(../fonts/x.svg#x) format('svg') }\n"
        ".gone { background: url(../img/overridden.png); background: linear-gradient(red, blue) }"
    ),
    "css/parts/more.css": '@import "../main.css";\n.card { background: url(card.png) }',
    "css/alt.css": ".x { background: url(../img/alternate.png) }",
}


@pytest.fixture
def site(tmp_path: Path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    server = serve(tmp_path, access_log=tmp_path / "access.log")
    yield server
    server.close()


def test_images_of_linked_and_imported_style_sheets_are_found(site, tmp_path):
    sheets = StylesheetCache(CONFIG, robots=None)
    page = fetch_page(site.url + "a/page.html", 0, CONFIG, stylesheets=sheets)
    assert page.error is None
    base = site.url.rstrip("/")
    assert sorted((ref.url, ref.kind) for ref in page.images) == [
        (base + "/css/parts/card.png", "stylesheet"),  # from the @import-ed sheet
        (base + "/img/hero.png", "stylesheet"),
        (base + "/img/inline.png", "img_src"),  # named by the page too: the page's kind
    ]
    again = fetch_page(site.url + "a/other.html", 0, CONFIG, stylesheets=sheets)
    assert {ref.url for ref in again.images} == {
        base + "/css/parts/card.png",
        base + "/img/hero.png",
        base + "/img/inline.png",
    }
    gets = [line.split()[1] for line in (tmp_path / "access.log").read_text().splitlines()]
    assert gets.count("/css/main.css") == 1, "each sheet is fetched once per crawl"
    assert gets.count("/css/parts/more.css") == 1
    assert "/css/alt.css" not in gets, "alternate style sheets are not applied"


def test_without_a_stylesheet_cache_no_sheet_is_fetched(site, tmp_path):
    page = fetch_page(site.url + "a/page.html", 0, CONFIG)
    assert [ref.kind for ref in page.images] == ["img_src"]
    gets = (tmp_path / "access.log").read_text()
    assert ".css" not in gets


def test_import_urls():
    css = (
        '@import url("a.css"); @import \'b.css\' screen; /* @import "no.css"; */'
        " @import url(c.css);"
    )
    assert import_urls(css) == ["a.css", "b.css", "c.css"]


def test_a_host_that_does_not_answer_is_unreachable_and_a_404_is_not(site):
    nobody = f"http://127.0.0.1:{free_port()}/page.html"
    down = fetch_page(nobody, 0, CONFIG)
    assert down.error and down.error.startswith("ConnectionError") and down.unreachable
    missing = fetch_page(site.url + "nothing.html", 0, CONFIG)
    assert (missing.error, missing.unreachable) == ("http_404", False)
