"""Cookies from a cookies.txt and per-host header rules: where each goes, and that no
message shows a value."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from requests.cookies import get_cookie_header

from crawler.config import Config, CrawlConfig
from crawler.demo.server import serve as serve_files
from crawler.demo.site import generate_site
from crawler.download.fetch import FetchLimits, fetch_image
from crawler.errors import ConfigError
from crawler.web.credentials import HostHeaders, credentials, load_cookies
from crawler.web.pages import fetch_page
from crawler.web.safehttp import AddressPolicy, SessionOptions, make_session

COOKIES = """\
# Netscape HTTP Cookie File
# exported by a browser
127.0.0.1\tFALSE\t/\tFALSE\t0\tconsent\tyes-SECRET1
.example.org\tTRUE\t/private\tTRUE\t2147483647\tsid\tSECRET2
#HttpOnly_www.example.net\tFALSE\t/\tFALSE\t2147483647\ttoken\tSECRET3
"""


def cookies_file(tmp_path: Path, text: str = COOKIES) -> str:
    path = tmp_path / f"cookies-{abs(hash(text))}.txt"
    path.write_text(text)
    return str(path)


def header_for(jar, url: str) -> str | None:
    return get_cookie_header(jar, requests.Request("GET", url).prepare())


def test_cookies_go_only_to_their_domains_paths_and_schemes(tmp_path):
    jar = load_cookies(cookies_file(tmp_path))
    # A session cookie (0 in the file) counts, and the port is no part of the match.
    assert header_for(jar, "http://127.0.0.1:8080/any") == "consent=yes-SECRET1"
    assert header_for(jar, "https://a.example.org/private/x") == "sid=SECRET2"
    assert header_for(jar, "http://a.example.org/private/x") is None  # secure: HTTPS only
    assert header_for(jar, "https://a.example.org/public") is None
    assert header_for(jar, "https://example.com/private/x") is None
    assert header_for(jar, "http://www.example.net/") == "token=SECRET3"  # HttpOnly lines


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cookies: no such file"),
        ("sid=SECRET4; other=SECRET5\n", "is not a Netscape cookies.txt"),
    ],
)
def test_a_cookies_file_that_cannot_be_used_is_one_clear_error_without_values(
    tmp_path, text, message
):
    path = str(tmp_path / "missing.txt") if text is None else cookies_file(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_cookies(path)
    assert "SECRET" not in str(caught.value)


def test_header_rules_follow_the_host_patterns_and_later_rules_win():
    rules = HostHeaders.from_config(
        (
            "*.example.org Authorization: Bearer SECRET6",
            "api.example.org:8443 X-Key: SECRET7",
            "api.example.org Authorization: Bearer SECRET8",
        )
    )
    assert rules.for_url("https://www.example.org/x") == {"Authorization": "Bearer SECRET6"}
    assert rules.for_url("https://api.example.org:8443/x") == {
        "Authorization": "Bearer SECRET8",
        "X-Key": "SECRET7",
    }
    assert rules.for_url("https://example.com/x") == {}
    assert "SECRET" not in repr(rules.rules)
    assert not HostHeaders.from_config(())


@pytest.fixture
def gated_site(tmp_path):
    site = tmp_path / "site"
    truth = generate_site(site, pages=1, images=2, seed=4)
    require = (("Cookie", "consent=yes-SECRET1"), ("X-Key", "SECRET9"))
    with serve_files(site, require=require) as server:
        yield server, truth


def test_pages_and_images_behind_a_cookie_and_a_header_are_fetched_with_both(tmp_path, gated_site):
    server, truth = gated_site
    config = CrawlConfig(
        allow_private=True,
        cookies=cookies_file(tmp_path),
        headers=("127.0.0.1 X-Key: SECRET9",),
    )
    page = fetch_page(server.url + "index.html", 0, config)
    assert page.error is None and page.images
    assert fetch_page(server.url + "index.html", 0, CrawlConfig(allow_private=True)).error == (
        "http_403"
    )
    image = truth["images"][0]
    url = server.url + image["path"].lstrip("/")
    cookies, headers = credentials(config)
    policy = AddressPolicy(allow_private=True)
    limits = FetchLimits.from_config(Config())
    out = tmp_path / "out"
    with_both = make_session(4, "ua", policy, SessionOptions(cookies=cookies, host_headers=headers))
    result = fetch_image(with_both, 1, url, out, "node-1", limits)  # the lean path
    assert (result.outcome, result.sha256) == ("stored", image["sha256"])
    cookie_only = make_session(4, "ua", policy, SessionOptions(cookies=cookies))
    assert fetch_image(cookie_only, 2, url, out, "node-1", limits).error == "http_403"
