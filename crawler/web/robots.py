"""robots.txt: fetched per host, decided by protego, honoured for pages and images.

Following RFC 9309 (section 2.3.1): a robots.txt that exists is obeyed; a missing one
(4xx) allows everything; one that cannot be read (5xx, no answer, a TLS failure, a
response that is not HTTP) means complete disallow *for now*. The cache then answers
``UNREACHABLE``, never ``DISALLOWED``: nothing of the host is fetched, and nothing is
reported as disallowed either. It tries again when asked after a pause that grows
with each failure in a row (1, 2, 4 ... 120 s, as for any host that gives no answer);
the callers hold what the robots.txt covers meanwhile and decide when to give up (at
once when the failure is not ``retryable``: a TLS failure). Rules once read are kept
for the whole crawl.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from crawler.web.retries import down_pause, is_no_answer

ROBOTS_MAX_BYTES = 512 * 1024
ALLOW_ALL = Protego.parse("")
# Verdicts on a URL; the last two are also the error codes of what they keep out.
ALLOWED = "allowed"
DISALLOWED = "robots_disallowed"
UNREACHABLE = "robots_unreachable"


class RobotsResponse(NamedTuple):
    """What fetching a robots.txt gave: a status and body, or no status and why."""

    status: int | None
    body: bytes = b""
    error: str = ""  # why there is no status ("connection_error: connection refused")
    retryable: bool = True  # False when trying again cannot help (a tls_error)


# Fetches a robots.txt URL (a plain ``(status, body)`` tuple will do).
RobotsFetcher = Callable[[str], RobotsResponse | tuple[int | None, bytes]]


@dataclass(frozen=True)
class RobotsFailure:
    """A robots.txt that could not be read, ``failures`` times in a row."""

    reason: str  # "http_503", "connection_error: connection refused", ...
    failures: int
    retry_at: float  # clock time from which it is fetched again when asked
    retryable: bool = True  # worth waiting for (False: a tls_error)

    @property
    def no_answer(self) -> bool:
        """The host gave no answer at all (politeness pauses such a host)."""
        return is_no_answer(self.reason)


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


def rules_from_response(status: int | None, body: bytes) -> Protego | None:
    """Pure: what a robots.txt response means (RFC 9309, section 2.3.1); None when it
    could not be read, which is complete disallow until it can be."""
    if status is None or status >= 500:
        return None
    if 400 <= status < 500:
        return ALLOW_ALL
    return Protego.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace"))


def failure_after(
    response: RobotsResponse, previous: RobotsFailure | None, now: float
) -> RobotsFailure:
    """Pure: the failure a response that could not be read makes, after ``previous``."""
    failures = previous.failures + 1 if previous is not None else 1
    reason = response.error or (f"http_{response.status}" if response.status else "no response")
    return RobotsFailure(reason, failures, now + down_pause(failures), response.retryable)


class RobotsCache:
    """robots.txt rules per scheme and host; thread-safe.

    Guarantee: each robots.txt is fetched by one thread at a time; rules are fetched
    once per crawl; a failure is fetched again only when asked after its ``retry_at``.
    """

    def __init__(
        self, user_agent: str, fetch: RobotsFetcher, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Protego matches the product token: the part of the User-Agent before "/".
        self.agent = user_agent.split("/", 1)[0].strip() or user_agent
        self._fetch = fetch
        self._clock = clock
        self._entries: dict[str, Protego | RobotsFailure] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def verdict(self, url: str) -> str:
        """``ALLOWED``, ``DISALLOWED`` or ``UNREACHABLE``; fetches the host's robots.txt
        first when it is not known yet, or when a failed one is due for another try."""
        return self.judge(url)[0]

    def judge(self, url: str) -> tuple[str, RobotsFailure | None]:
        """``verdict`` and, when it is ``UNREACHABLE``, the failure behind it."""
        entry = self._entry(url)
        return self._judge(url, entry), entry if isinstance(entry, RobotsFailure) else None

    def cached_verdict(self, url: str) -> str | None:
        """``verdict`` from what is known, never fetching; None before the first fetch."""
        with self._guard:
            entry = self._entries.get(robots_url(url))
        return None if entry is None else self._judge(url, entry)

    def allowed(self, url: str) -> bool:
        return self.verdict(url) == ALLOWED

    def has_rules(self, url: str) -> bool:
        """The host's robots.txt has been read (its rules hold for the crawl)."""
        with self._guard:
            return isinstance(self._entries.get(robots_url(url)), Protego)

    def failure(self, url: str) -> RobotsFailure | None:
        """Why the host's robots.txt could not be read, when the last try failed."""
        with self._guard:
            entry = self._entries.get(robots_url(url))
        return entry if isinstance(entry, RobotsFailure) else None

    def sitemaps(self, url: str) -> list[str]:
        """The ``Sitemap:`` URLs of the host's robots.txt (fetched when not known yet;
        none when it cannot be read)."""
        rules = self._entry(url)
        if isinstance(rules, RobotsFailure):
            return []
        return list(rules.sitemaps)

    def crawl_delay(self, url: str) -> float:
        """Seconds between requests the host asks for: ``Crawl-delay`` or the slower of
        it and ``Request-rate`` (0 when it asks for nothing or cannot be read)."""
        rules = self._entry(url)
        if isinstance(rules, RobotsFailure):
            return 0.0
        delay = float(rules.crawl_delay(self.agent) or 0.0)
        rate = rules.request_rate(self.agent)
        if rate is not None and rate.requests:
            try:
                delay = max(delay, rate.seconds / rate.requests)
            except OverflowError:  # "Request-rate: 1/1000...0", hundreds of digits
                delay = sys.float_info.max  # finite: the wire carries no infinity
        return delay

    def _judge(self, url: str, entry: Protego | RobotsFailure) -> str:
        if isinstance(entry, RobotsFailure):
            return UNREACHABLE
        return ALLOWED if entry.can_fetch(url, self.agent) else DISALLOWED

    def _current(self, entry: Protego | RobotsFailure | None) -> bool:
        return entry is not None and (
            not isinstance(entry, RobotsFailure) or entry.retry_at > self._clock()
        )

    def _entry(self, url: str) -> Protego | RobotsFailure:
        key = robots_url(url)
        with self._guard:
            entry = self._entries.get(key)
            if self._current(entry):
                return entry  # type: ignore[return-value]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one fetch per host at a time, even when several threads ask at once
            with self._guard:
                entry = self._entries.get(key)
            if not self._current(entry):
                response = RobotsResponse(*self._fetch(key))
                rules = rules_from_response(response.status, response.body)
                previous = entry if isinstance(entry, RobotsFailure) else None
                entry = (
                    rules if rules is not None else failure_after(response, previous, self._clock())
                )
                with self._guard:
                    self._entries[key] = entry
        return entry  # type: ignore[return-value]
