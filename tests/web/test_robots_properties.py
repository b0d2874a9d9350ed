"""Properties of robots.txt handling on any response: rules_from_response never raises
and follows RFC 9309's status classes; what the crawler asks of the rules (can_fetch,
crawl_delay, request_rate, sitemaps; RobotsCache's verdict, crawl_delay and sitemaps)
never raises for any URL and agent, and a crawl delay is finite and not negative;
failure_after counts failures and pauses 1, 2, 4 ... 120 s."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler.urls import normalize
from crawler.web.retries import MAX_DOWN_PAUSE
from crawler.web.robots import (
    ALLOWED,
    DISALLOWED,
    ROBOTS_MAX_BYTES,
    UNREACHABLE,
    RobotsCache,
    RobotsFailure,
    RobotsResponse,
    failure_after,
    rules_from_response,
)

STATUSES = st.one_of(
    st.none(),
    st.integers(),
    st.integers(min_value=100, max_value=599),
    st.sampled_from([-1, 0, 200, 204, 301, 399, 400, 404, 499, 500, 503, 599, 600, 10**30]),
)
NUMBERS = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "-1", "0", "1e400", "-0", "1_000", "0x10"]),
    st.sampled_from(["", " ", "1.5", ".5", "5.", "١٢", "10" + "0" * 400, "9" * 5000]),
    st.integers().map(str),
    st.floats().map(str),
)
RATES = st.one_of(
    st.tuples(NUMBERS, NUMBERS, st.sampled_from(["", "s", "m", "h", "d", "x"])).map(
        lambda parts: f"{parts[0]}/{parts[1]}{parts[2]}"
    ),
    st.sampled_from(
        ["1/0", "0/1", "/", "1/", "1/5 0900-1700", "1/5 25:00-99:99", "1/1" + "0" * 400]
    ),
)
PATHS = st.one_of(
    st.sampled_from(["/", "", "*", "/*", "$", "/$", "/*.png$", "/a*b*c", "%", "%zz", "/%2F", "/é"]),
    st.text(max_size=20),
    st.text("/*$a%.?=&", max_size=30),
    st.text(max_size=5).map(lambda text: "/" + text * 2000),  # a very long line
)
AGENTS = st.one_of(
    st.sampled_from(["*", "crawler", "CRAWLER", "crawl*", "", "mybot", "Googlebot", "é-bot"]),
    st.text(max_size=12),
)
FIELD_VALUES = {
    "User-agent": AGENTS,
    "Allow": PATHS,
    "Disallow": PATHS,
    "Crawl-delay": NUMBERS,
    "Request-rate": RATES,
    "Visit-time": st.sampled_from(["0900-1700", "2500-0000", "x", ""]),
    "Sitemap": st.one_of(st.sampled_from(["/s.xml", "http://h.test/s.xml", ""]), st.text()),
    "Host": st.text(max_size=10),
    "Noindex": PATHS,
    "Unknown-field": st.text(max_size=10),
}


@st.composite
def robots_lines(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(FIELD_VALUES)))
    spelled = draw(st.sampled_from([name, name.lower(), name.upper(), name.replace("-", "")]))
    separator = draw(st.sampled_from([": ", ":", " : ", " ", "::", ":\t"]))
    comment = draw(st.sampled_from(["", " # comment", "#", " #: Disallow: /"]))
    return spelled + separator + draw(FIELD_VALUES[name]) + comment


@st.composite
def robots_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(robots_lines(), st.text(max_size=20)), max_size=15))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


BODIES = st.one_of(st.binary(), robots_bodies())
URLS = st.one_of(
    st.text(),
    st.sampled_from(["http://h.test/", "http://h.test/robots.txt", "/a", "", "*", "%", "?"]),
    st.tuples(st.sampled_from(["http://h.test", "https://h.test:8443", ""]), PATHS).map("".join),
)


def assert_crawl_delay(seconds: float) -> None:
    assert isinstance(seconds, float), seconds
    assert math.isfinite(seconds) and seconds >= 0, seconds


@settings(max_examples=150, deadline=None)
@given(STATUSES, BODIES, st.lists(st.tuples(URLS, AGENTS), max_size=4))
def test_rules_from_any_response_answer_what_the_crawler_asks(
    status: int | None, body: bytes, questions: list[tuple[str, str]]
) -> None:
    rules = rules_from_response(status, body)
    if status is None or status >= 500:
        assert rules is None
        return
    assert rules is not None
    sitemaps = list(rules.sitemaps)
    assert all(isinstance(sitemap, str) for sitemap in sitemaps)
    for url, agent in questions:
        allowed = rules.can_fetch(url, agent)
        assert isinstance(allowed, bool)
        if 400 <= status < 500:
            assert allowed, "a missing robots.txt allows everything"
        delay = rules.crawl_delay(agent)
        assert delay is None or (math.isfinite(delay) and delay >= 0), delay
        rate = rules.request_rate(agent)
        assert rate is None or (rate.requests > 0 and rate.seconds > 0), rate


@settings(max_examples=100, deadline=None)
@given(
    STATUSES,
    BODIES,
    st.one_of(AGENTS, st.tuples(AGENTS, st.text(max_size=20)).map("/".join)),
    st.lists(URLS, min_size=1, max_size=4),
)
# a Request-rate of hundreds of digits raised OverflowError
@example(200, b"User-agent: *\nRequest-rate: 1/1" + b"0" * 400, "bot/1.0", ["http://h.test/"])
def test_the_cache_answers_for_any_response(
    status: int | None, body: bytes, user_agent: str, urls: list[str]
) -> None:
    cache = RobotsCache(user_agent, lambda url: (status, body), clock=lambda: 1000.0)
    for url in urls:
        url = normalize(url) or "http://h.test/"  # the crawler asks of normalized URLs
        verdict = cache.verdict(url)
        assert verdict in (ALLOWED, DISALLOWED, UNREACHABLE)
        assert (verdict == UNREACHABLE) == (status is None or status >= 500)
        if status is not None and 400 <= status < 500:
            assert verdict == ALLOWED
        delay = cache.crawl_delay(url)
        assert_crawl_delay(delay)
        sitemaps = cache.sitemaps(url)
        assert isinstance(sitemaps, list) and all(isinstance(s, str) for s in sitemaps)
        if verdict == UNREACHABLE:
            assert delay == 0.0 and sitemaps == []
            assert cache.failure(url) is not None and not cache.has_rules(url)


@settings(max_examples=50, deadline=None)
@given(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True),
    st.from_regex(r"/[a-z0-9_-]{1,8}/?", fullmatch=True),
    st.from_regex(r"[a-z0-9/._-]{0,12}", fullmatch=True),
    st.lists(robots_lines().filter(lambda line: not line.lower().startswith("user")), max_size=4),
)
def test_a_group_for_our_product_token_is_obeyed(
    product: str, prefix: str, rest: str, noise: list[str]
) -> None:
    ours = [f"User-agent: {product.lower()}", f"Disallow: {prefix}", "Crawl-delay: 3", ""]
    body = "\n".join([*ours, "User-agent: someone-else", "Allow: /", *noise]).encode()
    cache = RobotsCache(f"{product}/2.1 (+https://example.org/bot)", lambda url: (200, body))
    assert cache.verdict(f"http://h.test{prefix}{rest}") == DISALLOWED
    assert cache.verdict("http://h.test/robots.txt") == ALLOWED
    if not "/zz-other".startswith(prefix):
        assert cache.verdict("http://h.test/zz-other") == ALLOWED
    assert cache.crawl_delay("http://h.test/") == 3.0


@settings(max_examples=10, deadline=None)
@given(st.from_regex(r"/[a-z]{1,8}", fullmatch=True))
def test_only_the_first_bytes_of_a_robots_txt_are_read(path: str) -> None:
    head = b"User-agent: *\nAllow: /\n#" + b"x" * ROBOTS_MAX_BYTES
    rules = rules_from_response(200, head + f"\nUser-agent: *\nDisallow: {path}\n".encode())
    assert rules is not None and rules.can_fetch(f"http://h.test{path}", "crawler")


# -- failure_after --------------------------------------------------------------------

UNREADABLE = st.builds(
    RobotsResponse,
    st.one_of(st.none(), st.integers(min_value=500), st.integers(max_value=0)),
    st.binary(max_size=10),
    st.one_of(st.just(""), st.text(), st.sampled_from(["connection_error: refused", "timeout"])),
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(
    UNREADABLE,
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.integers(min_value=1, max_value=40),
)
def test_failures_count_up_and_pause_longer_up_to_a_bound(
    response: RobotsResponse, now: float, times: int
) -> None:
    previous: RobotsFailure | None = None
    pauses = []
    for count in range(1, times + 1):
        failure = failure_after(response, previous, now)
        assert failure.failures == count
        assert failure.retryable == response.retryable
        assert failure.reason, failure
        if response.error:
            assert failure.reason == response.error
        elif response.status:
            assert str(response.status) in failure.reason
        assert failure.no_answer == failure.reason.startswith(("connection_error", "timeout"))
        pauses.append(failure.retry_at - now)
        previous = failure
    assert math.isclose(pauses[0], 1.0, abs_tol=1e-6)
    assert all(1.0 - 1e-6 <= pause <= MAX_DOWN_PAUSE + 1e-6 for pause in pauses), pauses
    assert pauses == sorted(pauses), pauses
    if times >= 9:
        assert math.isclose(pauses[-1], MAX_DOWN_PAUSE, abs_tol=1e-6)
