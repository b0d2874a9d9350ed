"""The downloader and the page fetcher against a real server that misbehaves on purpose.

The server listens on 127.0.0.2, which the tests allow explicitly (as a user would
allow an intranet network); 127.0.0.1 stays off limits, so a redirect there must be
refused even though both are on this machine.
"""

from __future__ import annotations

import ipaddress
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from crawler.config import Config, CrawlConfig
from crawler.download.fetch import FetchLimits, fetch_image
from crawler.records import Result
from crawler.web.pages import fetch_page
from crawler.web.safehttp import AddressPolicy, make_session
from tests.support.hostile_server import PNG, HostileServer

ALLOWED = "127.0.0.2"
POLICY = AddressPolicy(allowed_networks=(ipaddress.ip_network(f"{ALLOWED}/32"),))
LIMITS = replace(
    FetchLimits.from_config(Config()),
    connect_timeout=2,
    read_timeout=2,
    total_timeout=20,
    max_bytes=1024 * 1024,
    max_redirects=10,
)


@pytest.fixture(scope="module")
def forbidden():
    server = HostileServer("127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile(forbidden):
    server = HostileServer(ALLOWED, redirect_target=forbidden.url + "/image.png")
    yield server
    server.close()


@pytest.fixture
def fetch(tmp_path: Path):
    out = tmp_path / "out"
    session = make_session(4, "hostile-test", POLICY)

    def run(url: str, limits: FetchLimits = LIMITS) -> Result:
        return fetch_image(session, 1, url, out, "node", limits)

    run.out = out  # type: ignore[attr-defined]
    yield run
    session.close()


def stored_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


def test_a_plain_image_is_stored(hostile, fetch):
    result = fetch(hostile.url + "/image.png")
    assert result.outcome == "stored" and result.bytes == len(PNG)


def test_endless_body_is_cut_at_the_size_limit(hostile, fetch):
    started = time.monotonic()
    result = fetch(hostile.url + "/endless")
    assert (result.outcome, result.error) == ("failed", "too_large")
    assert result.bytes <= LIMITS.max_bytes + 256 * 1024
    assert stored_files(fetch.out) == []
    assert time.monotonic() - started < 15


def test_lying_content_length_is_a_retryable_failure(hostile, fetch):
    result = fetch(hostile.url + "/lying-length")
    assert result.outcome == "failed" and result.retryable, result
    assert result.error.startswith(("truncated", "connection_error")), result.error
    assert stored_files(fetch.out) == []


def test_gzip_bomb_is_refused_without_inflating_it(hostile, fetch):
    tracemalloc.start()
    try:
        result = fetch(hostile.url + "/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.outcome, result.error) == ("failed", "too_large")
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB while reading a 64 MB bomb"
    assert stored_files(fetch.out) == []


@pytest.mark.parametrize("path", ["/html-as-jpeg", "/json-as-png"])
def test_text_served_as_an_image_is_not_an_image(hostile, fetch, path):
    result = fetch(hostile.url + path)
    assert (result.outcome, result.error) == ("failed", "not_an_image")
    assert not result.retryable and stored_files(fetch.out) == []


def test_redirect_to_a_forbidden_address_is_refused_before_any_request(hostile, forbidden, fetch):
    hits_before = len(forbidden.hits)
    result = fetch(hostile.url + "/redirect-elsewhere")
    assert result.outcome == "failed"
    assert result.error.startswith("blocked_address"), result.error
    assert "--allow-private" in result.error
    assert len(forbidden.hits) == hits_before, "the forbidden server must not see a request"


def test_a_task_for_a_loopback_url_is_refused(forbidden, fetch):
    hits_before = len(forbidden.hits)
    result = fetch(forbidden.url + "/image.png")
    assert result.error.startswith("blocked_address") and not result.retryable
    assert len(forbidden.hits) == hits_before


def test_redirect_to_a_file_url_is_refused(hostile, fetch):
    result = fetch(hostile.url + "/redirect-file")
    assert result.error.startswith("bad_redirect"), result.error
    assert stored_files(fetch.out) == []


def test_redirect_loop_stops_at_the_limit(hostile, fetch):
    hits_before = len([h for h in hostile.hits if h.startswith("/loop/")])
    result = fetch(hostile.url + "/loop/0")
    assert result.error.startswith("too_many_redirects"), result.error
    loops = len([h for h in hostile.hits if h.startswith("/loop/")]) - hits_before
    assert loops == LIMITS.max_redirects + 1


def test_a_url_that_climbs_directories_cannot_choose_the_path(hostile, fetch, tmp_path):
    result = fetch(hostile.url + "/img/..%2f..%2f..%2fetc/passwd")
    also = fetch(hostile.url + "/img/../../../../etc/passwd")
    assert result.outcome == also.outcome == "stored"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.is_relative_to(fetch.out) for p in files)
    assert not [p for p in files if "passwd" in p.name or "etc" in p.parts]
    assert {p.name for p in files} == {result.sha256 + ".png"}


def test_a_server_that_trickles_hits_the_total_deadline(hostile, fetch):
    limits = replace(LIMITS, total_timeout=1, max_bytes=1 << 20)
    started = time.monotonic()
    result = fetch(hostile.url + "/trickle", limits)
    assert result.error.startswith("too_slow"), result.error
    assert time.monotonic() - started < 6
    assert stored_files(fetch.out) == []


# -- pages ------------------------------------------------------------------------

PAGE_CONFIG = CrawlConfig(allow_networks=(f"{ALLOWED}/32",), page_timeout=10)


def test_deeply_nested_html_does_not_take_the_harvester_down(hostile):
    started = time.monotonic()
    page = fetch_page(hostile.url + "/deep.html", 0, PAGE_CONFIG)
    assert time.monotonic() - started < 60
    assert page.error is None or page.error.startswith("parse_error"), page.error
    if page.error is None:
        assert [ref.url for ref in page.images] == [hostile.url + "/image.png"]


def test_a_20_mb_page_is_cut_at_max_page_bytes_and_still_parsed(hostile):
    config = CrawlConfig(allow_networks=(f"{ALLOWED}/32",), max_page_bytes=2 * 1024 * 1024)
    started = time.monotonic()
    page = fetch_page(hostile.url + "/huge.html", 0, config)
    assert page.error is None and page.truncated
    assert [ref.url for ref in page.images] == [hostile.url + "/image.png"]
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("path", ["/junk.html", "/image-as-html"])
def test_binary_served_as_html_is_skipped(hostile, path):
    page = fetch_page(hostile.url + path, 0, PAGE_CONFIG)
    assert page.error == "not_html" and page.images == [] and page.links == []


def test_a_page_on_a_forbidden_address_is_refused(forbidden):
    hits_before = len(forbidden.hits)
    page = fetch_page(forbidden.url + "/image.png", 0, PAGE_CONFIG)
    assert page.error.startswith("blocked_address")
    assert len(forbidden.hits) == hits_before


def test_undecodable_bytes_in_a_page_are_replaced_not_fatal(hostile):
    page = fetch_page(hostile.url + "/bad-utf8.html", 0, PAGE_CONFIG)
    assert page.error is None
    assert [ref.url for ref in page.images] == [hostile.url + "/image.png"]
