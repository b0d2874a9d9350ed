"""Per-host limits for the whole cluster: requests in flight and time between them.

The harvester is the one place that sees every downloader node, so the limits are
decided here, when a lease is handed out: a host gets at most ``concurrency`` leased
tasks at a time, whichever nodes hold them. A host with a delay is asked one request
at a time, each starting ``delay`` after the previous one *ended* (the one moment
known to follow the server's receipt, whatever the network or a busy process did):
its tasks go to one node at a time, which spaces them with its own clock, each task
carries the earliest time (relative to now) it may start, and when a result comes
back the host's next start moves to a delay after it. The delay is the largest of
the configured one, robots.txt's ``Crawl-delay`` and a penalty that grows with every
429/503 and shrinks again with every success (an AutoThrottle-like backoff). A host
that gives no answer (refused, unresolved, timed out: ``retries.is_no_answer``) is
paused, 1, 2, 4 ... 120 s (``retries.down_pause``), instead of burning its tasks'
attempts; a TLS failure is an answer (``tls_error``, final), not a host that is down.

Pure policy: no I/O, and every method that needs the time takes ``now``. A "host" is
a URL's ``host[:port]``, as everywhere else in the crawler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from crawler.config import HostRule, PolitenessConfig, parse_host_rule
from crawler.records import Result
from crawler.urls import host_matches
from crawler.web.retries import down_pause, is_no_answer

MAX_PENALTY = 60.0  # seconds between requests at most, however often a host says 429
MIN_PENALTY = 0.25  # the first 429/503 spaces requests at least this far apart
PENALTY_RECOVERY = 0.8  # each success multiplies the penalty by this
MAX_CRAWL_DELAY = 60.0  # a larger robots.txt Crawl-delay is cut to this
LOOKAHEAD = 1.0  # seconds ahead a delayed host's requests are scheduled (and leased)


def is_throttle(result: Result) -> bool:
    """A 429 or 503: the host asks us to slow down."""
    return result.status in (429, 503)


def is_unreachable(result: Result) -> bool:
    """No response at all: refused, reset, DNS failure or timed out before headers."""
    return result.status is None and is_no_answer(result.error or "")


@dataclass
class HostState:
    in_flight: int = 0  # leased and not yet answered
    next_start: float = 0.0  # earliest start of this host's next request
    paused_until: float = 0.0
    crawl_delay: float = 0.0
    penalty: float = 0.0  # extra spacing after 429/503, decays with successes
    throttled: int = 0  # 429/503 answers seen
    down_since: float | None = None  # first of the current run of unreachable answers
    down_errors: int = 0
    requests: int = 0  # leases granted
    owner: str | None = None  # the node holding a delayed host's requests
    by_node: dict[str, int] = field(default_factory=dict)  # in flight per node


@dataclass
class Politeness:
    """Cluster-wide per-host limits, built from the ``[politeness]`` settings with
    ``from_config`` (the settings are the one place their defaults live).
    ``lookahead``: how far ahead a delayed host's requests are scheduled (and so
    leased) at most."""

    concurrency: int
    delay: float
    rules: tuple[HostRule, ...]
    down_timeout: float
    lookahead: float = LOOKAHEAD
    hosts: dict[str, HostState] = field(default_factory=dict)

    @classmethod
    def from_config(cls, settings: PolitenessConfig, lookahead: float = LOOKAHEAD) -> Politeness:
        """The limits ``settings`` (``config.politeness``) describe, no host seen yet."""
        return cls(
            concurrency=settings.host_concurrency,
            delay=settings.host_delay,
            rules=tuple(parse_host_rule(rule) for rule in settings.host_limits),
            down_timeout=settings.host_down_timeout,
            lookahead=lookahead,
        )

    def limits(self, host: str) -> tuple[int, float]:
        """``(concurrency, delay)`` for a host now, penalties and Crawl-delay included."""
        concurrency, delay = self.concurrency, self.delay
        for rule in self.rules:
            if host_matches(host, rule.pattern):
                concurrency = rule.concurrency if rule.concurrency is not None else concurrency
                delay = rule.delay if rule.delay is not None else delay
                break
        state = self.hosts.get(host)
        if state is not None:
            delay = max(delay, state.crawl_delay, state.penalty)
        return concurrency, delay

    def state(self, host: str) -> HostState:
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState()
        return state

    def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        self.state(host).crawl_delay = min(max(seconds or 0.0, 0.0), MAX_CRAWL_DELAY)

    def room(self, host: str, now: float, node: str = "", nodes: int = 1, reserve: int = 0) -> int:
        """How many requests to ``host`` may be granted to ``node`` now, when ``nodes``
        nodes share the work: each gets at most its fair share of the host's limit, so
        the first node to ask cannot keep the others idle. ``reserve`` slots stay free
        (for the harvester's own page fetches, which would otherwise wait behind every
        image of the host)."""
        state = self.state(host)
        concurrency, delay = self.limits(host)
        if delay > 0 and state.in_flight and state.owner not in (None, node):
            return 0
        share = -(-concurrency // max(nodes, 1))  # ceil
        reserve = min(reserve, concurrency - 1)  # a limit of 1 is still shared
        free = min(concurrency - reserve - state.in_flight, share - state.by_node.get(node, 0))
        horizon = now + self.lookahead
        start = max(now, state.next_start, state.paused_until)
        if free <= 0 or start > horizon:
            return 0
        if delay <= 0:
            return free
        return min(free, int((horizon - start) / delay) + 1)

    def grant(self, host: str, now: float, node: str = "") -> float | None:
        """Take a slot for ``node`` (call after ``room`` said there is one). Returns the
        seconds from now at which the request may start, or None when the host has no
        delay (start at once, no timing needed)."""
        state = self.state(host)
        _, delay = self.limits(host)
        state.in_flight += 1
        state.requests += 1
        state.by_node[node] = state.by_node.get(node, 0) + 1
        start = max(now, state.next_start, state.paused_until)
        if delay <= 0 and start <= now:
            return None
        state.owner = node
        state.next_start = start + delay
        return round(start - now, 3)

    def wake_time(self, hosts: Iterable[str], now: float) -> float | None:
        """When one of ``hosts``, now blocked by time rather than by concurrency, could
        be granted a request again (None if none is waiting on time)."""
        times = []
        for host in hosts:
            state = self.hosts.get(host)
            if state is None or state.in_flight >= self.limits(host)[0]:
                continue
            start = max(state.next_start, state.paused_until) - self.lookahead
            if start > now:
                times.append(start)
        return min(times) if times else None

    def release(self, host: str, now: float | None = None, node: str = "") -> None:
        """A request granted to ``node`` is over, however it ended (or its lease was
        taken back)."""
        state = self.state(host)
        state.in_flight = max(0, state.in_flight - 1)
        held = state.by_node.get(node, 0) - 1
        if held > 0:
            state.by_node[node] = held
        else:
            state.by_node.pop(node, None)
        if not state.in_flight:
            state.owner = None
        delay = self.limits(host)[1]
        if delay > 0 and now is not None:
            # ``now`` is after the request ended: the next one starts a delay later.
            state.next_start = max(state.next_start, now + delay)

    def feedback(self, host: str, result: Result, now: float) -> bool:
        """Learn from a result. Returns True when its failure should not count against
        the task's attempts (the host is down, and not for longer than ``down_timeout``)."""
        state = self.state(host)
        if is_unreachable(result):
            if state.down_since is None:
                state.down_since = now
            state.down_errors += 1
            state.paused_until = max(state.paused_until, now + down_pause(state.down_errors))
            # The first failure of a run counts: one dead URL on a healthy host must not
            # be retried for ever. Only a host with no answer at all is spared.
            return state.down_errors >= 2 and now - state.down_since < self.down_timeout
        state.down_since, state.down_errors = None, 0
        if is_throttle(result):
            state.throttled += 1
            state.penalty = min(max(state.penalty * 2, MIN_PENALTY), MAX_PENALTY)
            wait = max(result.retry_after or 0.0, state.penalty)
            state.paused_until = max(state.paused_until, now + wait)
        elif state.penalty:
            state.penalty *= PENALTY_RECOVERY
            if state.penalty < MIN_PENALTY / 4:
                state.penalty = 0.0
        return False

    def host_states(self, now: float) -> dict[str, int]:
        """How many hosts are busy (requests in flight), throttled (slowed after
        429/503), paused (no request before a time) and down (not answering)."""
        states = {"busy": 0, "throttled": 0, "paused": 0, "down": 0}
        for state in self.hosts.values():
            states["busy"] += state.in_flight > 0
            states["throttled"] += state.penalty > 0
            states["paused"] += state.paused_until > now
            states["down"] += state.down_errors > 0
        return states

    def snapshot(self, now: float, limit: int = 20) -> list[dict]:
        """The busiest or most throttled hosts, for the progress log and status."""
        rows = []
        for host, state in self.hosts.items():
            concurrency, delay = self.limits(host)
            paused = max(0.0, state.paused_until - now)
            if not (state.in_flight or paused or state.penalty or state.down_errors):
                continue
            rows.append(
                {
                    "host": host,
                    "in_flight": state.in_flight,
                    "limit": concurrency,
                    "delay": round(delay, 3),
                    "paused": round(paused, 1),
                    "throttled": state.throttled,
                    "down": state.down_errors > 0,
                    "requests": state.requests,
                }
            )
        rows.sort(key=lambda row: (-row["in_flight"], -row["paused"], row["host"]))
        return rows[:limit]
