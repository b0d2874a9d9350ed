"""robots.txt decisions (RFC 9309) and the per-host cache."""

from __future__ import annotations

import threading
import time

from crawler.web.robots import (
    ALLOWED,
    DISALLOWED,
    UNREACHABLE,
    RobotsCache,
    RobotsResponse,
    robots_url,
    rules_from_response,
)

ROBOTS = b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n\nUser-agent: mybot\nDisallow: /\n"


def test_robots_url_is_per_scheme_and_host():
    assert robots_url("https://h.test:8443/a/b?q#f") == "https://h.test:8443/robots.txt"


def test_a_robots_file_is_obeyed_for_our_agent():
    rules = rules_from_response(200, ROBOTS)
    assert not rules.can_fetch("http://h.test/private/a.png", "crawler")
    assert rules.can_fetch("http://h.test/public/a.png", "crawler")
    assert not rules.can_fetch("http://h.test/public/a.png", "mybot")
    assert rules.crawl_delay("crawler") == 2


def test_missing_robots_allows_and_unreadable_robots_has_no_rules_yet():
    assert rules_from_response(404, b"").can_fetch("http://h.test/x", "crawler")
    assert rules_from_response(403, b"").can_fetch("http://h.test/x", "crawler")
    assert rules_from_response(503, b"") is None
    assert rules_from_response(None, b"") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unreachable_robots_txt_is_never_a_disallow_and_is_tried_again_later():
    answers = [
        RobotsResponse(None, b"", "connection_error: connection refused"),
        RobotsResponse(503),
        RobotsResponse(None, b"", "timeout: connect timed out after 10 s"),
        RobotsResponse(200, ROBOTS),
    ]
    fetched: list[str] = []

    def fetch(url: str) -> RobotsResponse:
        fetched.append(url)
        return answers[len(fetched) - 1]

    clock = Clock()
    cache = RobotsCache("crawler/1.0", fetch, clock)
    page, private = "http://cdn.test/a.png", "http://cdn.test/private/a.png"
    assert cache.cached_verdict(page) is None and not fetched, "nothing known, nothing fetched"
    assert cache.verdict(page) == UNREACHABLE and cache.verdict(private) == UNREACHABLE
    assert not cache.allowed(page) and cache.crawl_delay(page) == 0.0
    failure = cache.failure(page)
    assert failure is not None and failure.no_answer
    assert (failure.reason, failure.failures, failure.retry_at) == (
        "connection_error: connection refused",
        1,
        1001.0,
    )
    assert len(fetched) == 1, "within the pause the failure is not fetched again"
    clock.now = 1001.0
    assert cache.cached_verdict(page) == UNREACHABLE and len(fetched) == 1
    assert cache.verdict(page) == UNREACHABLE and len(fetched) == 2
    failure = cache.failure(page)
    assert failure is not None and not failure.no_answer, "a 503 is an answer"
    assert (failure.reason, failure.failures, failure.retry_at) == ("http_503", 2, 1003.0)
    clock.now = 1002.9
    assert cache.verdict(page) == UNREACHABLE and len(fetched) == 2
    clock.now = 1003.0
    assert cache.verdict(page) == UNREACHABLE and cache.failure(page).retry_at == 1007.0
    clock.now = 1007.0
    assert cache.verdict(private) == DISALLOWED and cache.verdict(page) == ALLOWED
    assert cache.has_rules(page) and cache.failure(page) is None
    clock.now = 10**6
    assert cache.verdict(page) == ALLOWED and len(fetched) == 4, "rules are kept"
    assert (
        not cache.has_rules("http://other.test/") and fetched == ["http://cdn.test/robots.txt"] * 4
    )


def test_cache_fetches_each_robots_once_even_with_many_threads():
    fetched: list[str] = []

    def fetch(url: str) -> tuple[int | None, bytes]:
        fetched.append(url)
        time.sleep(0.05)
        return 200, ROBOTS

    cache = RobotsCache("mybot/1.0 (+https://example.org)", fetch)
    answers: list[bool] = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.allowed("http://a.test/x")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert answers == [False] * 8, "the mybot group disallows everything"
    assert fetched == ["http://a.test/robots.txt"]
    assert cache.allowed("http://b.test/public/x") is False
    assert fetched == ["http://a.test/robots.txt", "http://b.test/robots.txt"]
    other = RobotsCache("crawler/0.1", fetch)
    assert other.allowed("http://a.test/public/x") and not other.allowed("http://a.test/private/")


def test_crawl_delay_and_request_rate_for_our_agent():
    bodies = {
        "http://slow.test/robots.txt": b"User-agent: *\nCrawl-delay: 2.5\n",
        "http://rate.test/robots.txt": b"User-agent: *\nCrawl-delay: 1\nRequest-rate: 1/5\n",
        "http://other.test/robots.txt": b"User-agent: otherbot\nCrawl-delay: 9\n",
        "http://none.test/robots.txt": b"User-agent: *\nDisallow: /x\n",
    }
    cache = RobotsCache("imagebot/1.0", lambda url: (200, bodies[url]))
    assert cache.crawl_delay("http://slow.test/a.png") == 2.5
    assert cache.crawl_delay("http://rate.test/a.png") == 5.0, "the slower of the two"
    assert cache.crawl_delay("http://other.test/a.png") == 0.0, "not our agent"
    assert cache.crawl_delay("http://none.test/a.png") == 0.0


def test_a_failure_trying_again_cannot_help_says_so():
    tls = "tls_error: certificate verify failed: self-signed certificate"
    cache = RobotsCache("crawler/1.0", lambda url: RobotsResponse(None, b"", tls, False), Clock())
    assert cache.judge("https://h.test/a.png") == (UNREACHABLE, cache.failure("https://h.test/"))
    failure = cache.failure("https://h.test/")
    assert failure is not None and (failure.reason, failure.retryable) == (tls, False)
    assert not failure.no_answer, "a TLS failure is an answer, not a host that is down"
