"""A downloader node process: lease a batch -> gevent pool fetches -> report results.

Run only after ``gevent.monkey.patch_all()`` (``cli.py`` does it first thing for the
``download`` command). Three kinds of greenlets share the work and never make a
round trip per image: a *feeder* keeps one batch of leased tasks waiting beside the
pool, the *pool* fetches, and a *reporter* sends results in batches and extends the
leases the node still holds (its heartbeat).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from gevent.pool import Group, Pool

from crawler.config import Config, parse_address
from crawler.errors import BrokerUnavailable, StateError
from crawler.fetch import FetchLimits, fetch_image
from crawler.nodes import SHARED_TERMINAL
from crawler.politeness import MIN_PENALTY, is_throttle
from crawler.safehttp import AddressPolicy, make_session
from crawler.storage import Committer, remove_stale_temporaries
from crawler.transport import BrokerClient
from crawler.urls import host_of

REPORT_INTERVAL = 0.25
SHUTDOWN_GRACE = 10.0
PROGRESS_SHARED_EVERY = 5.0


class StopRequested(Exception):
    """A signal asked the node to stop while it was waiting for the harvester."""


def say(message: str) -> None:
    # On a terminal, first clear the progress line this message replaces.
    prefix = "\r\x1b[K" if sys.stderr.isatty() else ""
    print(prefix + message, file=sys.stderr, flush=True)


@dataclass
class NodeStats:
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def count(self, result: dict[str, Any]) -> None:
        if result["outcome"] == "stored":
            self.stored += 1
            self.bytes += result["bytes"]
        elif not result["retryable"]:
            self.failed += 1


class DownloaderNode:
    """One process of a downloader node."""

    def __init__(
        self,
        config: Config,
        authkey: bytes,
        node_id: str,
        connect: Callable[[tuple[str, int], bytes], BrokerClient] = BrokerClient,
    ) -> None:
        self.config = config
        self.download = config.download
        self.authkey = authkey
        self.node = node_id
        self.address = parse_address(config.download.connect, "connect")
        self.out = Path(config.output.out)
        self.batch_size = self.download.batch_size or self.download.concurrency
        self.limits = FetchLimits(
            connect_timeout=self.download.connect_timeout,
            read_timeout=self.download.read_timeout,
            total_timeout=self.download.total_timeout,
            max_bytes=self.download.max_image_bytes,
            max_redirects=config.crawl.max_redirects,
            min_width=self.download.min_width,
            min_height=self.download.min_height,
        )
        self._connect = connect
        self._client: BrokerClient | None = None
        self._client_lock = gevent.lock.RLock()
        self._heartbeat = 10.0
        self.user_agent = config.crawl.user_agent
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()
        self.held: set[int] = set()  # leased and not yet reported
        self.active = 0  # leased and not yet finished
        self.outbox: list[dict[str, Any]] = []
        self.done = False
        self.stopping = False
        self.pool_finished = False
        self._stop_event = gevent.event.Event()
        self.stats = NodeStats()
        self.paused: dict[str, float] = {}  # host -> monotonic time it may be asked again
        self.last_end: dict[str, float] = {}  # delayed host -> when its last request ended
        self.host_locks: dict[str, gevent.lock.Semaphore] = {}
        self._report_now = gevent.event.Event()
        self.committer = Committer(self.out, config.download.sync_files)

    # -- talking to the harvester, with reconnects ------------------------------

    def _broker(self) -> BrokerClient:
        """The current connection, (re)connecting with backoff while the harvester is away."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            wait, started, next_message = 0.1, time.monotonic(), 0.0
            limit = self.download.wait_for_harvester
            while True:
                if self.stopping:
                    raise StopRequested
                try:
                    client = self._connect(self.address, self.authkey)
                    reply = client.join(self.node, self._describe())
                    self._heartbeat = float(reply.get("heartbeat_seconds", 10.0))
                    # One User-Agent for the whole crawl, pages and images alike.
                    self.user_agent = str(reply.get("user_agent") or self.user_agent)
                    self._client = client
                    say(f"node {self.node}: connected to harvester at {client.where}")
                    return client
                except BrokerUnavailable as exc:
                    now = time.monotonic()
                    if limit and now - started >= limit:
                        raise BrokerUnavailable(f"{exc} (gave up after {limit:g} s)") from None
                    if now >= next_message:
                        say(f"node {self.node}: {exc}; waiting for it (retrying)")
                        next_message = now + 10
                    self._stop_event.wait(wait)
                    wait = min(wait * 2, 5.0)

    def _call(self, method: str, *args: Any) -> Any:
        while True:
            client = self._broker()
            try:
                return getattr(client, method)(self.node, *args)
            except BrokerUnavailable as exc:
                say(f"node {self.node}: {exc}; reconnecting")
                with self._client_lock:
                    if self._client is client:
                        self._client = None

    def _describe(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.download.concurrency,
        }

    # -- greenlets ---------------------------------------------------------------

    def feed(self) -> None:
        """Keep one batch leased beyond what the pool is fetching."""
        capacity = self.download.concurrency + self.batch_size
        while not self.done and not self.stopping:
            # Finished tasks waiting for the reporter (which may be syncing the disk)
            # do not take a place in the pool; held tasks stay under twice the capacity.
            room = min(capacity - self.active, 2 * capacity - len(self.held))
            if room < min(self.batch_size, capacity) and self.held:
                gevent.sleep(0.02)
                continue
            reply = self._call("lease_batch", room, 1.0)
            received = time.monotonic()
            for task_id, url, *timing in reply["tasks"]:
                self.held.add(task_id)
                self.active += 1
                # A host with a delay: the harvester says when this request may start,
                # and how far apart this node must keep its requests to the host.
                start_at = received + float(timing[0]) if timing else None
                spacing = float(timing[1]) if len(timing) > 1 else 0.0
                self.inbox.put((task_id, url, start_at, spacing))
            if reply["done"]:
                self.done = True
        self.inbox.put(None)

    def report(self) -> None:
        """Send results in batches; extend held leases every heartbeat.

        A batch's files are made durable and moved into place first (in a thread, so
        the pool keeps fetching), so a "stored" result never names a missing file.
        """
        last_beat = time.monotonic()
        while True:
            finished = self.pool_finished
            if self.outbox:
                # Taken together, with no switch between: a result is in the outbox
                # exactly when its file is staged.
                batch, self.outbox = self.outbox, []
                staged = self.committer.take()
                failed = self.committer.commit(staged, self._in_thread)
                for result in batch:
                    if result["id"] in failed:
                        self._store_failed(result, failed[result["id"]])
                self._call("report_results", batch)
                for result in batch:
                    self.held.discard(result["id"])
            if time.monotonic() - last_beat >= self._heartbeat:
                self._call("extend_leases", sorted(self.held))
                last_beat = time.monotonic()
            if finished and not self.outbox:
                return
            self._report_now.wait(REPORT_INTERVAL)
            self._report_now.clear()

    @staticmethod
    def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
        """Run a call that waits for the disk in gevent's threadpool (the loop goes on)."""
        return gevent.get_hub().threadpool.apply(function, args)

    def _store_failed(self, result: dict[str, Any], error: str) -> None:
        self.stats.stored -= 1
        self.stats.bytes -= result["bytes"]
        result.update(outcome="failed", error=error, retryable=True, path=None, sha256=None)

    def fetch(self, task: tuple[int, str, float | None, float], session: Any) -> None:
        task_id, url, start_at, spacing = task
        host = host_of(url)
        start_at = max(start_at or 0.0, self.paused.get(host, 0.0))
        gevent.sleep(max(0.0, start_at - time.monotonic()))
        if spacing:
            result = self._fetch_spaced(task_id, url, host, spacing, session)
        else:
            result = self._fetch_image(session, task_id, url)
        self.stats.count(result)
        if is_throttle(result):
            # Hold this node's other requests to the host at once, and tell the
            # harvester now, not at the next report, so that it pauses the host for all.
            wait = max(float(result.get("retry_after") or 0.0), MIN_PENALTY)
            self.paused[host] = max(self.paused.get(host, 0.0), time.monotonic() + wait)
            self._report_now.set()
        self.outbox.append(result)
        self.active -= 1
        if len(self.outbox) >= len(self.held):
            # Every task this node holds is done (the crawl's end, or a starved pool):
            # waiting for the next report tick would only delay the harvester.
            self._report_now.set()

    def _fetch_image(self, session: Any, task_id: int, url: str) -> dict[str, Any]:
        return fetch_image(
            session, task_id, url, self.out, self.node, self.limits, self.committer.stage
        )

    def show_progress(self) -> None:
        """On a terminal: one line, redrawn every second (a node of several processes:
        each child prints a full line every few seconds, so that they do not overwrite
        one another). Never on a pipe or a file."""
        shared = os.environ.get(SHARED_TERMINAL) == "1"
        while True:
            gevent.sleep(PROGRESS_SHARED_EVERY if shared else 1.0)
            self._progress_line(end="\n" if shared else "")

    def _progress_line(self, end: str) -> None:
        stats = self.stats
        elapsed = max(time.monotonic() - stats.started, 1e-9)
        line = (
            f"node {self.node}: stored {stats.stored}, failed {stats.failed}, "
            f"in flight {self.active}, {stats.stored / elapsed:.1f} images/s, "
            f"{stats.bytes / 1e6:.1f} MB"
        )
        sys.stderr.write(f"\r\x1b[K{line}{end}")
        sys.stderr.flush()

    def _fetch_spaced(
        self, task_id: int, url: str, host: str, spacing: float, session: Any
    ) -> dict[str, Any]:
        """A delayed host's requests go one at a time from this node, each starting
        ``spacing`` after the previous one ended: the end of a response is the one
        moment known to follow the server's receipt of the request, so the server
        sees them at least that far apart however late a greenlet was scheduled."""
        lock = self.host_locks.setdefault(host, gevent.lock.Semaphore())
        with lock:
            gevent.sleep(max(0.0, self.last_end.get(host, 0.0) + spacing - time.monotonic()))
            try:
                return self._fetch_image(session, task_id, url)
            finally:
                self.last_end[host] = time.monotonic()

    def run(self) -> int:
        """Work until the harvester says there is no more; returns the exit code."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            stale = remove_stale_temporaries(self.out)
        except OSError as exc:
            raise StateError(f"cannot use the output folder {self.out}: {exc.strerror}") from None
        if stale:
            say(f"node {self.node}: removed {stale} partial files left by a killed process")
        gevent.signal_handler(signal.SIGTERM, self.stop)
        gevent.signal_handler(signal.SIGINT, self.stop)
        try:
            self._broker()
        except StopRequested:
            return 0
        crawl = self.config.crawl
        policy = AddressPolicy.from_config(crawl)
        session = make_session(self.download.concurrency, self.user_agent, policy)
        pool = Pool(self.download.concurrency)
        # Timed tasks start on the harvester's schedule, not when a pool slot frees up:
        # a late start could bring two requests to a host closer than its delay.
        # The harvester's per-host limits keep their number small.
        timed = Group()
        feeder = gevent.spawn(self.feed)
        reporter = gevent.spawn(self.report)
        progress = gevent.spawn(self.show_progress) if sys.stderr.isatty() else None
        while not self.stopping:
            task = self.inbox.get()
            if task is None:
                break
            (pool if task[2] is None else timed).spawn(self.fetch, task, session)
        for group in (pool, timed):
            if not group.join(timeout=SHUTDOWN_GRACE if self.stopping else None):
                group.kill()
        self.done = self.pool_finished = True
        feeder.kill()
        self._report_now.set()  # the last results go now, not at the next tick
        reporter.join()
        if progress is not None:
            progress.kill()
            self._progress_line(end="\n")
        self._say_goodbye()
        elapsed = time.monotonic() - self.stats.started
        say(
            f"node {self.node}: finished: stored {self.stats.stored}, failed "
            f"{self.stats.failed}, {self.stats.bytes / 1e6:.1f} MB in {elapsed:.1f} s"
        )
        return 0

    def _say_goodbye(self) -> None:
        """Tell the harvester we are leaving, without waiting for it if it is gone.

        Two tries: this greenlet's connection may date from before a harvester restart;
        the first failure drops it, the second try opens a fresh one.
        """
        client = self._client
        if client is None:
            return
        for _attempt in range(2):
            with contextlib.suppress(BrokerUnavailable):
                client.leave(self.node)
                return

    def stop(self) -> None:
        """First signal: stop leasing, finish or hand back what is in flight. Second: exit."""
        if self.stopping:
            os._exit(130)
        say(f"node {self.node}: stopping (finishing in-flight downloads; again to quit now)")
        self.stopping = True
        self._stop_event.set()
        self.inbox.put(None)
