"""robots.txt: fetched once per host, decided by protego, honoured for pages and images.

Following RFC 9309: a robots.txt that exists is obeyed; a missing one (4xx) allows
everything; one that cannot be read (5xx, network failure) disallows the whole host
for this crawl, since a crawler cannot know what the site meant to forbid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024
ALLOW_ALL = Protego.parse("")
DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")

# Fetches a robots.txt URL: (HTTP status or None when unreachable, body bytes).
RobotsFetcher = Callable[[str], tuple[int | None, bytes]]


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


def rules_from_response(status: int | None, body: bytes) -> Protego:
    """Pure: what a robots.txt response means for the crawl (RFC 9309, section 2.3)."""
    if status is None or status >= 500:
        return DISALLOW_ALL
    if 400 <= status < 500:
        return ALLOW_ALL
    return Protego.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace"))


class RobotsCache:
    """robots.txt rules per scheme and host, fetched at most once each; thread-safe."""

    def __init__(self, user_agent: str, fetch: RobotsFetcher) -> None:
        # Protego matches the product token: the part of the User-Agent before "/".
        self.agent = user_agent.split("/", 1)[0].strip() or user_agent
        self._fetch = fetch
        self._rules: dict[str, Protego] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def rules(self, url: str) -> Protego:
        key = robots_url(url)
        with self._guard:
            if key in self._rules:
                return self._rules[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one fetch per host, even when several threads ask at once
            if key not in self._rules:
                rules = rules_from_response(*self._fetch(key))
                with self._guard:
                    self._rules[key] = rules
        return self._rules[key]

    def allowed(self, url: str) -> bool:
        return self.rules(url).can_fetch(url, self.agent)

    def crawl_delay(self, url: str) -> float:
        """Seconds between requests the host asks for: ``Crawl-delay`` or the slower of
        it and ``Request-rate`` (0 when it asks for nothing)."""
        rules = self.rules(url)
        delay = float(rules.crawl_delay(self.agent) or 0.0)
        rate = rules.request_rate(self.agent)
        if rate is not None and rate.requests:
            delay = max(delay, rate.seconds / rate.requests)
        return delay
