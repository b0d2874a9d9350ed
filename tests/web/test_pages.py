"""Fetching a page with its style sheets, against a real server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from crawler.config import CrawlConfig
from crawler.demo.server import serve as serve_files
from crawler.web.css import import_urls
from crawler.web.extract import match_page_selectors
from crawler.web.pages import StylesheetCache, check_robots, fetch_page, fetch_robots
from crawler.web.robots import RobotsCache
from tests.e2e.cluster import free_port
from tests.web.test_failures import self_signed, serve

__all__ = ["self_signed", "serve"]  # fixtures shared with test_failures

CONFIG = CrawlConfig(allow_private=True)

FILES = {
    "a/page.html": (
        '<html><head><link rel="stylesheet" href="../css/main.css">'
        '<link rel="alternate stylesheet" href="../css/alt.css">'
        '<link rel="stylesheet" href="../css/missing.css"></head>'
        '<body><img class="logo" src="../img/inline.png"><div class="hero gone"></div>'
        '<section><p class="card">x</p></section></body></html>'
    ),
    "a/other.html": (
        '<link rel="stylesheet" href="/css/main.css"><p class="hero">same sheet again</p>'
        '<ul><li><a class="next" href="/b">next</a></li></ul>'
    ),
    "css/main.css": (
        '@import url("parts/more.css");\n'
        ".hero { background: url(../img/hero.png) }\n"
        '.logo { background-image: url("/img/inline.png") }\n'
        "@font-face { font-family: x; src: url(../fonts/x.svg#x) format('svg') }\n"
        ".gone { background: url(../img/overridden.png); background: linear-gradient(red, blue) }\n"
        "ul > li a.next::after { content: url(../img/arrow.png) }\n"
        ".nowhere { background: url(../img/nowhere.png) }\n"
        ".hero:hover, .hero:focus { background: url(../img/hover.png) }\n"
        "@media print { .hero { background: url(../img/print.png) } }\n"
    ),
    "css/parts/more.css": '@import "../main.css";\n.card { background: url(card.png) }',
    "css/alt.css": ".x { background: url(../img/alternate.png) }",
}


@pytest.fixture
def site(tmp_path: Path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    server = serve_files(tmp_path, access_log=tmp_path / "access.log")
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
    # The second page shows hero.png too, which the crawl has already: only its own.
    again = fetch_page(site.url + "a/other.html", 0, CONFIG, stylesheets=sheets)
    assert [(ref.url, ref.kind) for ref in again.images] == [
        (base + "/img/arrow.png", "stylesheet")
    ]
    gets = [line.split()[1] for line in (tmp_path / "access.log").read_text().splitlines()]
    assert gets.count("/css/main.css") == 1, "each sheet is fetched once per crawl"
    assert gets.count("/css/parts/more.css") == 1
    assert "/css/alt.css" not in gets, "alternate style sheets are not applied"


def test_selectors_are_matched_once_per_page_and_only_those_still_possible(site):
    asked = []

    def match(html, content_type, selectors):
        asked.append(selectors)
        return match_page_selectors(html, content_type, selectors)

    sheets = StylesheetCache(CONFIG, robots=None)
    fetch_page(site.url + "a/page.html", 0, CONFIG, stylesheets=sheets, match=match)
    # .logo's image the page names itself; ul/li/a.next, .nowhere: no such elements;
    # @media print is skipped; the gradient hides .gone's image.
    assert asked == [[".hero", ".hero:hover, .hero:focus", ".card"]]
    fetch_page(site.url + "a/other.html", 0, CONFIG, stylesheets=sheets, match=match)
    # hero.png and card.png were shown by the first page: not looked for again.
    assert asked[1:] == [["ul > li a.next", ".hero:hover, .hero:focus"]]


def test_a_conditional_get_of_a_page_unchanged_is_not_modified(site, tmp_path):
    url = site.url + "a/page.html"
    first = fetch_page(url, 0, CONFIG)
    assert first.etag.startswith('"') and first.last_modified.endswith("GMT")
    assert first.images and not first.not_modified

    again = fetch_page(url, 0, CONFIG, validators=(first.etag, first.last_modified))
    assert (again.status, again.not_modified, again.error) == (304, True, None)
    assert again.images == [] and again.links == []  # what it referenced last holds
    by_date = fetch_page(url, 0, CONFIG, validators=("", first.last_modified))
    assert by_date.not_modified

    (tmp_path / "a" / "page.html").write_text('<img src="/img/new.png">')
    changed = fetch_page(url, 0, CONFIG, validators=(first.etag, first.last_modified))
    assert (changed.status, changed.not_modified) == (200, False)
    assert changed.etag != first.etag
    assert [ref.url for ref in changed.images] == [site.url + "img/new.png"]
    statuses = [line.split()[2] for line in (tmp_path / "access.log").read_text().splitlines()]
    assert statuses == ["200", "304", "304", "200"]


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
    assert (down.error, down.unreachable) == ("connection_error: connection refused", True)
    assert down.retryable, "the harvester tries such a page again later"
    missing = fetch_page(site.url + "nothing.html", 0, CONFIG)
    assert (missing.error, missing.unreachable, missing.retryable) == ("http_404", False, False)


def robots_cache() -> RobotsCache:
    return RobotsCache(CONFIG.user_agent, lambda url: fetch_robots(url, CONFIG))


def test_a_self_signed_page_is_a_final_tls_error(serve, self_signed):
    def tls(conn) -> None:
        with self_signed.wrap_socket(conn, server_side=True) as wrapped:
            wrapped.recv(65536)

    url = serve(tls, "https")
    page = fetch_page(url, 0, CONFIG)
    assert page.error == "tls_error: certificate verify failed: self-signed certificate"
    assert (page.retryable, page.unreachable) == (False, False), "not a host that is down"
    behind = fetch_page(url, 0, CONFIG, robots_cache())
    assert behind.error == "robots_unreachable: " + page.error, "its robots.txt cannot be read"
    assert (behind.retryable, behind.unreachable) == (False, False), "and will not be"


def answer_503(requests_seen: list[bytes]):
    def answer(conn) -> None:
        requests_seen.append(conn.recv(65536).split(b"\r\n")[0])
        conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return answer


def test_a_page_whose_robots_txt_cannot_be_read_is_not_fetched_and_not_disallowed(serve):
    seen: list[bytes] = []
    url = serve(answer_503(seen))
    page = fetch_page(url, 0, CONFIG, robots_cache())
    assert (page.error, page.retryable, page.unreachable) == (
        "robots_unreachable: http_503",
        True,
        False,
    )
    assert seen == [b"GET /robots.txt HTTP/1.1"], "only the robots.txt was asked for"
    down = fetch_page(f"http://127.0.0.1:{free_port()}/page.html", 0, CONFIG, robots_cache())
    assert down.error == "robots_unreachable: connection_error: connection refused"
    assert down.retryable and down.unreachable, "politeness pauses a host that gives no answer"


def test_images_on_a_host_whose_robots_txt_cannot_be_read_are_held(tmp_path, serve):
    seen: list[bytes] = []
    cdn = serve(answer_503(seen)).removesuffix("/x")
    (tmp_path / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (tmp_path / "page.html").write_text(
        f'<img src="{cdn}/a.png"><img src="/own.png"><img src="/private/no.png">'
    )
    server = serve_files(tmp_path)
    try:
        page = fetch_page(server.url + "page.html", 0, CONFIG, robots_cache())
    finally:
        server.close()
    assert page.error is None
    assert [ref.url for ref in page.held_images] == [cdn + "/a.png"]
    assert [ref.url for ref in page.images] == [server.url + "own.png"]
    assert [ref.url for ref in page.refused_images] == [server.url + "private/no.png"]
    assert seen == [b"GET /robots.txt HTTP/1.1"], "the held image itself is not fetched"


def test_check_robots_reads_a_robots_txt_again_only_when_its_try_is_due(serve):
    seen: list[bytes] = []
    url = serve(answer_503(seen))
    robots = robots_cache()
    first = check_robots(url, robots)
    assert first.robots_only and first.url == url.removesuffix("x") + "robots.txt"
    assert (first.error, first.unreachable) == ("robots_unreachable: http_503", False)
    assert check_robots(url, robots).error == first.error and len(seen) == 1, "within the pause"


def test_a_robots_txt_that_cannot_be_decoded_is_unreadable(serve):
    def bad_gzip(conn) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")

    response = fetch_robots(serve(bad_gzip), CONFIG)
    assert response.status is None and response.error.startswith("bad_encoding: ")
    assert fetch_robots(f"http://127.0.0.1:{free_port()}/robots.txt", CONFIG) == (
        None,
        b"",
        "connection_error: connection refused",
        True,
    )


def test_close_sessions_closes_every_page_threads_session(monkeypatch: pytest.MonkeyPatch):
    from concurrent.futures import ThreadPoolExecutor

    from crawler.config import CrawlConfig
    from crawler.web import pages

    closed: list[object] = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    with ThreadPoolExecutor(3) as threads:
        opened = set(threads.map(lambda _: pages._session(CrawlConfig()), range(30)))

    pages.close_sessions()

    assert opened and set(closed) >= opened
    pages.close_sessions()  # twice: nothing left to close
    assert len(closed) == len(set(closed))


def test_a_page_behind_a_private_ca_is_read_with_its_bundle(private_site, monkeypatch):
    url = private_site.url + "index.html"
    trusting = CrawlConfig(allow_private=True, ca_bundle=str(private_site.ca_pem))
    page = fetch_page(url, 0, trusting)
    assert page.error is None and page.status == 200 and page.images
    # Without it: a clear failure of that page, final, not a down host.
    untrusted = fetch_page(url, 0, CONFIG)
    assert untrusted.error.startswith("tls_error: certificate verify failed"), untrusted.error
    assert not untrusted.retryable and not untrusted.unreachable
    # requests' own variable works too, though the sessions ignore the environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(private_site.ca_pem))
    assert fetch_page(url, 0, CONFIG).error is None


def test_a_page_request_carries_its_referer(tmp_path: Path):
    (tmp_path / "p.html").write_text("<p>hello</p>")
    with serve_files(tmp_path) as server:
        fetch_page(server.url + "p.html", 1, CONFIG, referer=server.url + "index.html")
        assert server.referers["/p.html"] == server.url + "index.html"
        fetch_page(server.url + "p.html", 0, CONFIG)  # a seed: none
        assert server.referers["/p.html"] is None
