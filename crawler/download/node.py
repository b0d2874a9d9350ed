"""A downloader node process: lease a batch -> gevent pool fetches -> report results.

Run only after ``gevent.monkey.patch_all()`` (``entry.py`` does it, first thing in a
downloader process). Three kinds of greenlets share the work and never make a
round trip per image: a *feeder* keeps one batch of leased tasks waiting beside the
pool, the *pool* fetches, and a *reporter* sends results in batches and extends the
leases the node still holds (its heartbeat).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from gevent.pool import Group, Pool

from crawler import wire
from crawler.broker.politeness import MIN_PENALTY, is_throttle
from crawler.config import Config
from crawler.download.committer import Committer, StoreCommitter
from crawler.download.fetch import FetchLimits, fetch_image, new_result
from crawler.download.processes import SHARED_TERMINAL
from crawler.errors import BrokerUnavailable, CrawlerError, NotAHarvester, StateError
from crawler.metrics.base import NodeMetrics, NoMetrics
from crawler.objectstore import default_spool, is_store_url, open_store
from crawler.records import (
    LOCAL_ERROR,
    LOCAL_POLICY,
    LOCAL_STORAGE,
    STORED,
    AddressPolicyRecord,
    LeasedTask,
    Result,
)
from crawler.storage import probe_storage, remove_stale_temporaries
from crawler.urls import host_of
from crawler.web.optout import product_token
from crawler.web.safehttp import AddressPolicy, make_session, session_options
from crawler.wire.base import BrokerClient, CallFailed

PROGRESS_SHARED_EVERY = 5.0
STORAGE_PROBE_INTERVAL = 2.0  # seconds between checks of a node's storage after a fault
START_PROBE_BYTES = 4096  # a node that cannot write this much to OUT does not start


LEASE_WAIT = 1.0  # seconds a lease call waits for work to appear
# A leased task and the clock time at which it may start (None: at once).
Leased = tuple[LeasedTask, "float | None"]
Reply = TypeVar("Reply")
# Fetches one image: (session, task id, url, Referer) -> its result (``fetch.fetch_image``).
Fetch = Callable[[Any, int, str, "str | None"], Result]


class Clock(Protocol):
    """The node's time: gevent's in a node, a fake one in tests of the loop."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def wait(self, event: gevent.event.Event, seconds: float) -> None: ...


class GeventClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def wait(self, event: gevent.event.Event, seconds: float) -> None:
        event.wait(seconds)


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
    handed_back: int = 0  # tasks given back for a fault of this node (no attempt used)
    bytes: int = 0
    started: float = 0.0

    def count(self, result: Result) -> None:
        if result.local:
            self.handed_back += 1
        elif result.outcome == STORED:
            self.stored += 1
            self.bytes += result.bytes or 0
        elif not result.retryable:
            self.failed += 1


class DownloaderNode:
    """One process of a downloader node."""

    def __init__(
        self,
        config: Config,
        authkey: bytes,
        node_id: str,
        connect: Callable[[], BrokerClient] | None = None,
        fetch: Fetch | None = None,
        clock: Clock | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        """``connect``, ``fetch`` and ``clock`` replace the broker's wire (``wire.connect``
        of ``download.connect``), the image fetch (``fetch_image``) and gevent's time, for
        tests of this loop; ``metrics`` counts what the node does (default: nothing)."""
        self.download = config.download
        self.metrics = metrics or NoMetrics()
        self.node = node_id
        self.clock = clock or GeventClock()
        # Images go to ``output.out``: a folder, or an object store (``s3://...``) that
        # they reach from a local spool folder (``stored_in`` names it for messages).
        self.store = open_store(config.output.out) if is_store_url(config.output.out) else None
        self.out = (
            Path(config.download.spool or default_spool())
            if self.store
            else Path(config.output.out)
        )
        self.stored_in = self.store.where if self.store else str(self.out)
        self.batch_size = self.download.batch_size or self.download.concurrency
        self.limits = FetchLimits.from_config(config)
        self._connect = connect or (
            lambda: wire.connect(config.download.connect, authkey, config.tls, config.shared)
        )
        self._fetch = fetch or self._fetch_image
        self._client: BrokerClient | None = None
        self._client_lock = gevent.lock.RLock()
        self._heartbeat = 10.0
        self.user_agent = config.crawl.user_agent
        self.inbox: gevent.queue.Queue[Leased | None] = gevent.queue.Queue()
        self.held: set[int] = set()  # leased and not yet reported
        self.active = 0  # leased and not yet finished
        self.outbox: list[Result] = []
        self.done = False
        self.stopping = False
        self.pool_finished = False
        self._stop_event = gevent.event.Event()
        self.stats = NodeStats(started=self.clock.now())
        self.paused: dict[str, float] = {}  # host -> monotonic time it may be asked again
        self.last_end: dict[str, float] = {}  # delayed host -> when its last request ended
        self.host_locks: dict[str, gevent.lock.Semaphore] = {}
        self._report_now = gevent.event.Event()
        self.committer = (
            StoreCommitter(self.out, self.store)
            if self.store
            else Committer(self.out, config.download.sync_files)
        )
        self.own_policy = AddressPolicy.from_config(config.crawl)
        # Checked now: a CA bundle that is not there is a user's mistake, said at start.
        self.session_options = session_options(config.crawl, os.environ)  # this node's own
        self.crawl_policy: AddressPolicy | None = None  # the harvester's, from ``join``
        # Set while this node cannot store files: it leases nothing and hands back
        # what it holds, until a probe of its storage succeeds.
        self.fault: str | None = None
        self._remote_errors = 0
        self._stop_deadline = 0.0
        self.fatal: CrawlerError | None = None
        self._connected_once = False

    # -- talking to the harvester, with reconnects ------------------------------

    def _broker(self) -> BrokerClient:
        """The current connection, (re)connecting with backoff while the harvester is away."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            wait, started, next_message = 0.1, self.clock.now(), 0.0
            limit = self.download.wait_for_harvester
            while True:
                if self.stopping:
                    raise StopRequested
                try:
                    client = self._connect()
                    reply = client.join(self.node, self._describe())
                    self._heartbeat = reply.heartbeat_seconds
                    # One User-Agent for the whole crawl, pages and images alike.
                    self.user_agent = reply.user_agent or self.user_agent
                    # The crawl's opt-out rule, and the token its X-Robots-Tag lines name.
                    self.limits = dataclasses.replace(
                        self.limits,
                        agent=product_token(self.user_agent),
                        skip_opted_out=reply.skip_opted_out,
                    )
                    self._learn_crawl_policy(reply.address_policy)
                    self._client = client
                    self._connected_once = True
                    say(f"node {self.node}: connected to harvester at {client.where}")
                    return client
                except (BrokerUnavailable, NotAHarvester) as exc:
                    if isinstance(exc, NotAHarvester) and not self._connected_once:
                        raise
                    # (Not a harvester after it was one: a harvester restarting.)
                    now = self.clock.now()
                    if limit and now - started >= limit:
                        raise BrokerUnavailable(f"{exc} (gave up after {limit:g} s)") from None
                    if now >= next_message:
                        say(f"node {self.node}: {exc}; waiting for it (retrying)")
                        next_message = now + 10
                    self.clock.wait(self._stop_event, wait)
                    wait = min(wait * 2, 5.0)

    def _call(self, what: str, call: Callable[[BrokerClient], Reply]) -> Reply:
        """``call(client)``, again after a reconnect or a pause until it is taken."""
        while True:
            client = self._broker()
            try:
                reply = call(client)
                self._remote_errors = 0
                return reply
            except BrokerUnavailable as exc:
                say(f"node {self.node}: {exc}; reconnecting")
                with self._client_lock:
                    if self._client is client:
                        self._client = None
                client.close()
            except CallFailed as exc:
                # The harvester failed to take the call (its disk full, say): it keeps
                # nothing of it, so the same call goes again after a pause.
                self._remote_errors += 1
                wait = min(0.5 * 2 ** min(self._remote_errors - 1, 4), 5.0)
                if self._remote_errors == 1:
                    say(
                        f"node {self.node}: the harvester failed to take {what} "
                        f"({exc}); trying again"
                    )
                if self.stopping:
                    raise StopRequested from None
                self.clock.wait(self._stop_event, wait)

    def _learn_crawl_policy(self, policy: AddressPolicyRecord | None) -> None:
        """The harvester's address policy: an address it allows and this node refuses
        is this node's fault, handed back for another node (said once, here)."""
        if policy is None:
            return
        networks = []
        for text in policy.allow_networks:
            with contextlib.suppress(ValueError):  # (the harvester checked them)
                networks.append(ipaddress.ip_network(text))
        first = self.crawl_policy is None
        self.crawl_policy = AddressPolicy(policy.allow_private, tuple(networks))
        own = self.own_policy
        refuses_more = (
            first
            and not own.allow_private
            and (self.crawl_policy.allow_private or not set(networks) <= set(own.allowed_networks))
        )
        if refuses_more:
            say(
                f"node {self.node}: the crawl allows private addresses that this node "
                "refuses (start it with --allow-private, or the same allow_networks): "
                "their images are handed back for other nodes"
            )

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
        try:
            with contextlib.suppress(StopRequested):
                self._feed(capacity)
        except CrawlerError as exc:
            self._fail(exc)
        finally:
            self.inbox.put(None)

    def _feed(self, capacity: int) -> None:
        while not self.done and not self.stopping:
            if self.fault is not None:  # nothing new while this node cannot store
                self.clock.sleep(0.2)
                continue
            # Finished tasks waiting for the reporter (which may be syncing the disk)
            # do not take a place in the pool; held tasks stay under twice the capacity.
            room = min(capacity - self.active, 2 * capacity - len(self.held))
            if room < min(self.batch_size, capacity) and self.held:
                self.clock.sleep(0.02)
                continue
            reply = self._call(
                "lease", lambda c, limit=room: c.lease_batch(self.node, limit, LEASE_WAIT)
            )
            received = self.clock.now()
            for task in reply.tasks:
                self.held.add(task.id)
                self.active += 1
                # A host with a delay: the harvester says when this request may start,
                # and how far apart this node must keep its requests to the host.
                start_at = None if task.start_in is None else received + task.start_in
                self.inbox.put((task, start_at))
            self.metrics.in_flight(self.active)
            if reply.done:
                self.done = True

    def report(self) -> None:
        """Send results in batches; extend held leases every heartbeat.

        A batch's files are made durable and moved into place first (in a thread, so
        the pool keeps fetching), so a "stored" result never names a missing file.
        """
        try:
            with contextlib.suppress(StopRequested):
                self._report()
        except CrawlerError as exc:
            self._fail(exc)
            self.inbox.put(None)

    def _fail(self, exc: CrawlerError) -> None:
        """A reconnect met a final error (another key, not a harvester): stop, and let
        ``run`` raise it, instead of a greenlet dying while ``run`` waits for ever."""
        self.fatal = exc
        self.stopping = True
        self._stop_event.set()

    def _report(self) -> None:
        last_beat = self.clock.now()
        while True:
            finished = self.pool_finished
            if self.outbox:
                # Taken together, with no switch between: a result is in the outbox
                # exactly when its file is staged.
                batch, self.outbox = self.outbox, []
                staged = self.committer.take()
                failed = self.committer.commit(staged, self._in_thread)
                for result in batch:
                    if result.id in failed:
                        self._store_failed(result, failed[result.id])
                self._call("results", lambda c, done=batch: c.report_results(self.node, done))
                for result in batch:
                    self.held.discard(result.id)
                self.metrics.reported(batch)
            if self.clock.now() - last_beat >= self._heartbeat:
                held = sorted(self.held)
                self._call("extend", lambda c, ids=held: c.extend_leases(self.node, ids))
                last_beat = self.clock.now()
            self.metrics.in_flight(self.active)
            if finished and not self.outbox:
                return
            self.clock.wait(self._report_now, self.download.report_interval)
            self._report_now.clear()

    @staticmethod
    def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
        """Run a call that waits for the disk in gevent's threadpool (the loop goes on)."""
        return gevent.get_hub().threadpool.apply(function, args)

    def _store_failed(self, result: Result, error: str) -> None:
        self.stats.stored -= 1
        self.stats.bytes -= result.bytes or 0
        self.stats.handed_back += 1
        result.failed_locally(error, LOCAL_STORAGE)
        self._storage_failed(error)

    def _storage_failed(self, error: str) -> None:
        """This node cannot store files: say so once, lease nothing, hand back what it
        holds, and probe the storage until it works again."""
        if self.fault is not None:
            return
        self.fault = error
        say(
            f"node {self.node}: cannot store images in {self.stored_in} ({error}); handing its "
            "tasks back to the harvester and pausing until it can write again"
        )
        gevent.spawn(self._wait_for_storage)

    def _wait_for_storage(self) -> None:
        while not self.stopping:
            self.clock.wait(self._stop_event, STORAGE_PROBE_INTERVAL)
            try:
                self._in_thread(probe_storage, self.out)
                self._probe_store()
            except OSError:
                continue
            self.fault = None
            say(f"node {self.node}: can store images in {self.stored_in} again; resuming")
            return

    def _probe_store(self) -> None:
        """Raise ``OSError`` unless the object store (if any) answers a listing."""
        if self.store is not None:
            next(iter(self.store.keys()), None)

    def fetch(self, leased: Leased, session: Any) -> None:
        task, start_at = leased
        host = host_of(task.url)
        try:
            result = self._fetch_task(task, start_at, host, session)
        except Exception as exc:  # a bug of ours: the task goes back, never lost or final
            traceback.print_exc()
            result = new_result(task.id, task.url, self.node)
            result.failed_locally(f"node_error: {type(exc).__name__}: {exc}"[:300], LOCAL_ERROR)
        self._note_local_fault(result)
        self.stats.count(result)
        if is_throttle(result):
            # Hold this node's other requests to the host at once, and tell the
            # harvester now, not at the next report, so that it pauses the host for all.
            wait = max(result.retry_after or 0.0, MIN_PENALTY)
            self.paused[host] = max(self.paused.get(host, 0.0), self.clock.now() + wait)
            self._report_now.set()
        self.outbox.append(result)
        self.active -= 1
        if len(self.outbox) >= len(self.held):
            # Every task this node holds is done (the crawl's end, or a starved pool):
            # waiting for the next report tick would only delay the harvester.
            self._report_now.set()

    def _fetch_task(
        self, task: LeasedTask, start_at: float | None, host: str, session: Any
    ) -> Result:
        if self.fault is not None:  # leased before the fault: back, unfetched
            return self._handed_back(task, self.fault)
        start_at = max(start_at or 0.0, self.paused.get(host, 0.0))
        self.clock.sleep(max(0.0, start_at - self.clock.now()))
        if task.spacing:
            return self._fetch_spaced(task, host, session)
        return self._fetch(session, task.id, task.url, task.referer)

    def _handed_back(self, task: LeasedTask, fault: str) -> Result:
        result = new_result(task.id, task.url, self.node)
        result.failed_locally(fault, LOCAL_STORAGE)
        return result

    def _note_local_fault(self, result: Result) -> None:
        """Mark a result that failed through this node's fault (``local``), and act."""
        if result.local == LOCAL_STORAGE:
            self._storage_failed(str(result.error))
            return
        peer, result.peer = result.peer, None
        policy = self.crawl_policy
        if peer and policy is not None and policy.allows(peer):
            result.local = LOCAL_POLICY
            result.error = (
                f"{result.error}; the crawl allows it: start node {self.node} with --allow-private"
            )

    def _fetch_image(self, session: Any, task_id: int, url: str, referer: str | None) -> Result:
        return fetch_image(
            session, task_id, url, self.out, self.node, self.limits, self.committer.stage, referer
        )

    def show_progress(self) -> None:
        """On a terminal: one line, redrawn every second (a node of several processes:
        each child prints a full line every few seconds, so that they do not overwrite
        one another). Never on a pipe or a file."""
        shared = os.environ.get(SHARED_TERMINAL) == "1"
        while True:
            self.clock.sleep(PROGRESS_SHARED_EVERY if shared else 1.0)
            self._progress_line(end="\n" if shared else "")

    def _progress_line(self, end: str) -> None:
        stats = self.stats
        elapsed = max(self.clock.now() - stats.started, 1e-9)
        line = (
            f"node {self.node}: stored {stats.stored}, failed {stats.failed}, "
            + (f"handed back {stats.handed_back}, " if stats.handed_back else "")
            + f"in flight {self.active}, {stats.stored / elapsed:.1f} images/s, "
            f"{stats.bytes / 1e6:.1f} MB" + (" (paused: cannot store)" if self.fault else "")
        )
        sys.stderr.write(f"\r\x1b[K{line}{end}")
        sys.stderr.flush()

    def _fetch_spaced(self, task: LeasedTask, host: str, session: Any) -> Result:
        """A delayed host's requests go one at a time from this node, each starting
        ``spacing`` after the previous one ended: the end of a response is the one
        moment known to follow the server's receipt of the request, so the server
        sees them at least that far apart however late a greenlet was scheduled."""
        lock = self.host_locks.setdefault(host, gevent.lock.Semaphore())
        with lock:
            last_end = self.last_end.get(host, 0.0)
            self.clock.sleep(max(0.0, last_end + task.spacing - self.clock.now()))
            try:
                return self._fetch(session, task.id, task.url, task.referer)
            finally:
                self.last_end[host] = self.clock.now()

    def run(self) -> int:
        """Work until the harvester says there is no more; returns the exit code."""
        self.prepare_output()
        gevent.signal_handler(signal.SIGTERM, self.stop)
        gevent.signal_handler(signal.SIGINT, self.stop)
        return self.work()

    def prepare_output(self) -> None:
        """Refuse to start on an output folder this node cannot write (``StateError``),
        and remove what killed processes left there."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            stale = remove_stale_temporaries(self.out)
            probe_storage(self.out, START_PROBE_BYTES)
        except OSError as exc:
            folder = "spool folder" if self.store else "output folder"
            raise StateError(
                f"cannot store images in the {folder} {self.out}: {exc.strerror or exc}"
            ) from None
        try:
            self._probe_store()
        except OSError as exc:
            raise StateError(f"cannot store images in {self.stored_in}: {exc}") from None
        if stale:
            say(f"node {self.node}: removed {stale} partial files left by a killed process")

    def work(self) -> int:
        """Lease, fetch and report until the broker has no more work or a stop."""
        try:
            self._broker()
        except StopRequested:
            return 0
        with contextlib.closing(
            make_session(
                self.download.concurrency,
                self.user_agent,
                self.own_policy,
                self.session_options,
            )
        ) as session:
            self._serve(session)
        elapsed = self.clock.now() - self.stats.started
        if self.fatal is not None:
            raise self.fatal
        handed_back = self.stats.handed_back
        say(
            f"node {self.node}: finished: stored {self.stats.stored}, failed "
            f"{self.stats.failed}, "
            + (f"handed back {handed_back} (faults of this node), " if handed_back else "")
            + f"{self.stats.bytes / 1e6:.1f} MB in {elapsed:.1f} s"
        )
        return 0

    def _serve(self, session: Any) -> None:
        """The feeder, the pool and the reporter, until the work is done or a stop."""
        pool = Pool(self.download.concurrency)
        self.metrics.pool(self.download.concurrency)
        # Timed tasks start on the harvester's schedule, not when a pool slot frees up:
        # a late start could bring two requests to a host closer than its delay.
        # The harvester's per-host limits keep their number small.
        timed = Group()
        feeder = gevent.spawn(self.feed)
        reporter = gevent.spawn(self.report)
        progress = gevent.spawn(self.show_progress) if sys.stderr.isatty() else None
        while not self.stopping:
            leased = self.inbox.get()
            if leased is None:
                break
            group = pool if leased[1] is None else timed
            if group is pool:
                pool.wait_available()
            if self.stopping:
                break  # not started: it goes back when the node leaves
            group.spawn(self.fetch, leased, session)
        for group in (pool, timed):
            if not self._join(group, self._grace_left()):
                group.kill()
        self.done = self.pool_finished = True
        feeder.kill()
        self._report_now.set()  # the last results go now, not at the next tick
        # Stopping, a harvester that does not answer must not hold the node for ever:
        # what it did not get comes back to it when the leases run out.
        self._join(reporter, self._grace_left())
        reporter.kill()
        if progress is not None:
            progress.kill()
            self._progress_line(end="\n")
        self._say_goodbye()

    def _say_goodbye(self) -> None:
        """Tell the harvester we are leaving, without waiting for it if it is gone.

        Two tries: this greenlet's connection may date from before a harvester restart;
        the first failure drops it, the second try opens a fresh one.
        """
        client = self._client
        if client is None:
            return
        # Bounded: a harvester that hangs must not keep a stopping node (it declares
        # the node lost after node_timeout anyway).
        grace = self._grace_left()
        grace = self.download.shutdown_grace if grace is None else max(grace, 1.0)
        with gevent.Timeout(grace, False):
            for _attempt in range(2):
                with contextlib.suppress(BrokerUnavailable, CallFailed):
                    client.leave(self.node)
                    break
        client.close()

    def _join(self, work: Group | gevent.Greenlet, seconds: float | None) -> bool:
        """Wait for ``work`` to finish, at most ``seconds`` of the node's clock (None:
        as long as it takes); returns whether it finished."""
        finished = gevent.event.Event()
        waiter = gevent.spawn(lambda: (work.join(), finished.set()))
        try:
            if seconds is None:
                finished.wait()
            else:
                self.clock.wait(finished, seconds)
        finally:
            waiter.kill()
        return finished.is_set()

    def _grace_left(self) -> float | None:
        """Seconds left of the shutdown grace (one for the whole stop: in-flight
        downloads, the last report, the goodbye), None while not stopping."""
        if not self.stopping:
            return None
        return max(self._stop_deadline - self.clock.now(), 0.0)

    def stop(self) -> None:
        """First signal: stop leasing, finish or hand back what is in flight. Second: exit."""
        if self.stopping:
            os._exit(130)
        say(f"node {self.node}: stopping (finishing in-flight downloads; again to quit now)")
        self.stopping = True
        self._stop_deadline = self.clock.now() + self.download.shutdown_grace
        self._stop_event.set()
        self.inbox.put(None)
