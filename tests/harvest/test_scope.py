"""Tests for crawler.harvest.scope: which pages are crawled and which images are taken."""

from __future__ import annotations

import dataclasses

import pytest

from crawler.config import CrawlConfig
from crawler.harvest.scope import Scope
from crawler.urls import host_matches, normalize

SEEDS = ["http://example.org/docs/", "http://127.0.0.1:8000/"]


def scope(**settings) -> Scope:
    return Scope(dataclasses.replace(CrawlConfig(), **settings), SEEDS)


@pytest.mark.parametrize(
    ("netloc", "pattern", "subdomains", "expected"),
    [
        ("example.org", "example.org", False, True),
        ("example.org:8080", "example.org", False, True),  # no port in the pattern: any port
        ("example.org:8080", "example.org:8080", False, True),
        ("example.org", "example.org:8080", False, False),
        ("example.org:8081", "example.org:8080", False, False),
        ("cdn.example.org", "example.org", False, False),
        ("cdn.example.org", "example.org", True, True),
        ("a.b.example.org", "*.example.org", False, True),
        ("example.org", "*.example.org", False, True),  # the domain itself too
        ("badexample.org", "*.example.org", False, False),  # not a subdomain
        ("badexample.org", "example.org", True, False),
        ("example.org.evil.test", "example.org", True, False),
        ("[::1]:5599", "[::1]", False, True),
        ("[::1]", "[::1]:5599", False, False),
        ("example.org", "EXAMPLE.org", False, True),  # patterns may be any case
    ],
)
def test_host_matches(netloc: str, pattern: str, subdomains: bool, expected: bool) -> None:
    assert host_matches(netloc, pattern, subdomains) is expected


def test_pages_stay_on_the_seeds_hosts_with_their_exact_port() -> None:
    default = scope()
    assert default.page_allowed("http://example.org/other")
    assert default.page_allowed("https://example.org/other")  # default ports are dropped
    assert default.page_allowed("http://127.0.0.1:8000/x")
    assert not default.page_allowed("http://127.0.0.1:8001/x")
    assert not default.page_allowed("http://example.org:8080/x")
    assert not default.page_allowed("http://www.example.org/")
    assert not default.page_allowed("http://evil.test/example.org")


def test_after_normalize_case_and_default_port_do_not_matter() -> None:
    url = normalize("HTTP://EXAMPLE.org:80/a")
    assert url is not None and scope().page_allowed(url)


def test_a_seed_redirect_target_joins_the_scope() -> None:
    crawl = scope()
    assert not crawl.page_allowed("https://www.example.org/")
    crawl.add_host("https://www.example.org/docs/")
    assert crawl.page_allowed("https://www.example.org/other")


def test_subdomains_of_the_seeds_on_any_port() -> None:
    crawl = scope(allow_subdomains=True)
    assert crawl.page_allowed("http://www.example.org/")
    assert crawl.page_allowed("http://a.b.example.org:8443/")
    assert not crawl.page_allowed("http://notexample.org/")
    assert not crawl.page_allowed("http://other.test/")


def test_allow_hosts_adds_host_patterns() -> None:
    crawl = scope(allow_hosts=("blog.example.net", "*.cdn.test", "127.0.0.1:9000"))
    assert crawl.page_allowed("http://blog.example.net/post")
    assert crawl.page_allowed("http://img.cdn.test/page")
    assert crawl.page_allowed("http://cdn.test/page")
    assert crawl.page_allowed("http://127.0.0.1:9000/")
    assert not crawl.page_allowed("http://127.0.0.1:9001/")
    assert not crawl.page_allowed("http://www.example.net/")


def test_same_host_false_allows_any_host_but_keeps_the_other_rules() -> None:
    crawl = scope(same_host=False, exclude=("/private/",))
    assert crawl.page_allowed("http://anywhere.test/page")
    assert not crawl.page_allowed("http://anywhere.test/private/page")


def test_prefix_restricts_pages_to_urls_under_it() -> None:
    crawl = scope(prefixes=("HTTP://Example.org/docs/",))  # normalized like page URLs
    assert crawl.page_allowed("http://example.org/docs/")
    assert crawl.page_allowed("http://example.org/docs/guide/intro.html")
    assert not crawl.page_allowed("http://example.org/blog/")
    assert not crawl.page_allowed("http://example.org/docs")  # not under the folder
    assert not crawl.page_allowed("http://127.0.0.1:8000/docs/")


def test_several_prefixes_any_one_will_do() -> None:
    crawl = scope(prefixes=("http://example.org/docs/", "http://example.org/api/"))
    assert crawl.page_allowed("http://example.org/api/v1")
    assert not crawl.page_allowed("http://example.org/blog/")


def test_include_and_exclude_regexes() -> None:
    crawl = scope(include=(r"/docs/", r"\.html$"), exclude=(r"[?&]sort=", r"/old/"))
    assert crawl.page_allowed("http://example.org/docs/a")
    assert crawl.page_allowed("http://example.org/b.html")
    assert not crawl.page_allowed("http://example.org/blog/b")  # matches no include
    assert not crawl.page_allowed("http://example.org/docs/a?sort=asc")  # excluded
    assert not crawl.page_allowed("http://example.org/docs/old/a.html")  # exclude wins


def test_images_come_from_any_host_unless_image_hosts_is_set() -> None:
    assert scope().image_allowed("http://cdn.elsewhere.test/a.png")
    crawl = scope(image_hosts=("*.example.org", "127.0.0.1:8000"))
    assert crawl.image_allowed("http://img.example.org/a.png")
    assert crawl.image_allowed("http://127.0.0.1:8000/a.png")
    assert not crawl.image_allowed("http://127.0.0.1:8001/a.png")
    assert not crawl.image_allowed("http://cdn.elsewhere.test/a.png")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/a.html",
        "https://127.0.0.1:8000/",
        "http://127.0.0.1:80001/a.html",  # another port that starts with the seed's
        "http://127.0.0.1/a.html",
        "http://example.org/docs/x",
        "http://example.org.evil.test/docs/",
        "http://other.test/?next=http://example.org/",
        "http://www.example.org/",
    ],
)
@pytest.mark.parametrize("subdomains", [False, True])
def test_the_seed_origin_shortcut_agrees_with_the_host_rules(url: str, subdomains: bool) -> None:
    fast = scope(allow_subdomains=subdomains)
    slow = scope(allow_subdomains=subdomains)
    slow._seed_origins = ()  # every URL takes the long way
    assert fast.page_allowed(url) == slow.page_allowed(url)
