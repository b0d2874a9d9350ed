"""The broker that downloader nodes call, on any wire (``wire.serve``).

The at-least-once guarantee of leases is the task board's (``board.py``: the pure
bookkeeping, given the time). ``Broker`` adds the lock, the node registry and
long-polling, and speaks the records of ``records.py`` in their wire form, so that
every wire (``wire/``) serves it as it is.
"""

from __future__ import annotations

import collections
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from crawler.broker.board import BoardCounters, Task, TaskBoard
from crawler.broker.politeness import Politeness
from crawler.broker.state import Transaction
from crawler.config import QueueConfig
from crawler.records import (
    FAILED,
    STORED,
    AddressPolicyRecord,
    JoinReply,
    LeasedTask,
    LeaseReply,
    Result,
)
from crawler.urls import referer_for

# The longest a lease call waits for work (``queue.max_lease_wait``).
MAX_LEASE_WAIT = QueueConfig().max_lease_wait
PAGE_FETCHER = "(harvester pages)"  # the politeness "node" of the harvester's own fetches


@dataclass
class NodeInfo:
    node: str
    info: dict[str, Any]
    last_seen: float
    stored: int = 0
    failed: int = 0
    handed_back: int = 0  # tasks it gave back for faults of its own
    fault: str | None = None  # its last fault, until it stores something again
    fault_runs: int = 0  # report batches with faults since it last stored
    paused_until: float = 0.0  # no leases for it before this


@dataclass(frozen=True)
class QueueFigures:
    """The queue's state at one moment, for the metrics (``Broker.figures``)."""

    tasks: dict[str, int]  # waiting, leased, stored, failed
    nodes: int
    nodes_paused: int
    hosts: dict[str, int]  # busy, throttled, paused, down -> hosts
    host_tasks: dict[str, dict[str, int]]  # host -> state -> tasks
    node_tasks: dict[str, dict[str, int]]  # node -> leased, stored, failed
    counters: BoardCounters  # a copy
    closed: bool


# A node that hands tasks back for its own faults gets no leases for a while, longer
# each time (its tasks go to healthy nodes meanwhile); storing something again resets it.
NODE_PAUSE_FIRST = 5.0
NODE_PAUSE_MAX = 60.0


def node_pause(fault_runs: int) -> float:
    """Seconds without leases for a node after its ``fault_runs``-th faulty batch."""
    return min(NODE_PAUSE_FIRST * 2.0 ** min(fault_runs - 1, 10), NODE_PAUSE_MAX)


class Broker:
    """Thread-safe queues shared by the harvester and the manager's server threads.

    Remote methods (``join``, ``lease_batch``, ``extend_leases``, ``report_results``,
    ``leave``, ``status``: the names of ``wire.base.BrokerClient``) take and
    return plain data only. Local methods are used by the harvester's main loop.
    """

    def __init__(
        self,
        lease_seconds: float,
        max_attempts: int,
        node_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        db: sqlite3.Connection | None = None,
        politeness: Politeness | None = None,
        user_agent: str = "",
        address_policy: AddressPolicyRecord | None = None,
        max_lease_wait: float | None = None,
        referer: str = "none",
        skip_opted_out: bool = False,
    ) -> None:
        self.max_lease_wait = MAX_LEASE_WAIT if max_lease_wait is None else max_lease_wait
        self.board = TaskBoard(lease_seconds, max_attempts, db, politeness)
        self.politeness = self.board.politeness
        self.user_agent = user_agent
        self.referer = referer  # the crawl's Referer policy (``urls.referer_for``)
        # The crawl's address policy (allow_private, allow_networks), told to every node
        # so that one that refuses more hands such tasks back instead of failing them.
        self.address_policy = address_policy
        self.skip_opted_out = skip_opted_out  # a dataset crawl, told to every node
        self.node_timeout = node_timeout
        self.clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self.closed = False
        self.storage_fault: sqlite3.OperationalError | None = None
        self._finished: list[Task] = []
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._random = random.Random()
        self.crawl_info: dict[str, Any] = {}

    # -- remote: called by downloader nodes through the manager ------------------

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        """Register a downloader; returns the timings it must respect."""
        with self._lock:
            known = node in self.nodes
            self.nodes[node] = NodeInfo(str(node), dict(info), self.clock())
            if not known:
                self._events.append(("node_joined", {"node": node, **info}))
        lease = self.board.lease_seconds
        return JoinReply(
            lease_seconds=lease,
            heartbeat_seconds=min(lease, self.node_timeout) / 3,
            user_agent=self.user_agent,
            address_policy=self.address_policy,
            skip_opted_out=self.skip_opted_out,
        ).to_wire()

    def lease_batch(self, node: str, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """Lease up to ``limit`` tasks, waiting up to ``wait`` s for work to appear.

        ``done`` is True once the harvester has no more work at all: the node may exit.
        """
        deadline = time.monotonic() + min(max(float(wait), 0.0), self.max_lease_wait)
        with self._wake:
            while True:
                self._seen(node)
                if self.closed:
                    return LeaseReply(done=True).to_wire()
                now = self.clock()
                if self.nodes[node].paused_until > now:
                    tasks = []  # failing on its own side: its share goes to the others
                else:
                    tasks = self.board.lease(node, max(int(limit), 0), now, self._healthy(now))
                remaining = deadline - time.monotonic()
                if tasks or remaining <= 0:
                    leased = [
                        LeasedTask(
                            t.id,
                            t.url,
                            t.start_in,
                            t.spacing,
                            referer_for(t.page, t.url, self.referer),
                        )
                        for t in tasks
                    ]
                    return LeaseReply(leased).to_wire()
                wake = self.board.wake_time(now)
                if wake is not None:
                    remaining = min(remaining, max(wake - now, 0.01))
                self._wake.wait(remaining)

    def extend_leases(self, node: str, ids: list[int]) -> bool:
        """Heartbeat: keep the node alive and extend the leases it still holds."""
        with self._lock:
            self._seen(node)
            self.board.extend(node, ids, self.clock())
        return True

    def report_results(self, node: str, results: list[Any]) -> int:
        """Accept a batch of results (``Result`` in wire form; what names no task is
        ignored); returns how many finished a task."""
        batch = [
            r for r in map(Result.from_wire, results if isinstance(results, list) else []) if r
        ]
        finished = 0
        with self._wake, self._storage_guard():
            self._seen(node)
            now = self.clock()
            with Transaction(self.board.db):
                info = self.nodes[node]
                for task in self.board.complete_many(node, batch, now, self._random.random):
                    self._finished.append(task)
                    finished += 1
                    info.stored += task.state == STORED
                    info.failed += task.state == FAILED
            self._follow_node_faults(info, batch, now)
            self._wake.notify_all()
        return finished

    @contextlib.contextmanager
    def _storage_guard(self) -> Iterator[None]:
        """A database write that fails in a server thread (a full disk) is kept for the
        harvester's loop, which stops on it; the node is told the call failed and sends
        it again to the resumed harvester."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if self.storage_fault is None:
                self.storage_fault = exc
            raise

    def _follow_node_faults(self, info: NodeInfo, results: list[Result], now: float) -> None:
        """Pause a node that handed tasks back for its own faults (longer each time it
        fails again after a pause, said in the log); welcome it back once it stores
        again. Caller holds the lock."""
        local = [r for r in results if r.local]
        if local and info.paused_until > now:
            info.handed_back += len(local)  # the same run of faults: what it still held
        elif local:
            info.handed_back += len(local)
            info.fault_runs += 1
            info.fault = str(local[0].error or local[0].local)[:300]
            pause = node_pause(info.fault_runs)
            info.paused_until = now + pause
            self._events.append(
                (
                    "node_failing",
                    {
                        "node": info.node,
                        "error": info.fault,
                        "handed_back": len(local),
                        "paused": pause,
                    },
                )
            )
        elif info.fault is not None and any(r.stored for r in results):
            info.fault, info.fault_runs, info.paused_until = None, 0, 0.0
            self._events.append(("node_recovered", {"node": info.node}))

    def _healthy(self, now: float) -> int:
        """Nodes sharing the hosts' limits: those not paused for their own faults."""
        return sum(1 for info in self.nodes.values() if info.paused_until <= now) or 1

    def leave(self, node: str) -> bool:
        """A node says goodbye: its leases (there should be none) go back to the queue."""
        with self._wake:
            if node in self.nodes:
                del self.nodes[node]
                self._finished += self.board.release_node(node, self.clock())
                self._events.append(("node_left", {"node": node}))
                self._wake.notify_all()
        return True

    def status(self) -> dict[str, Any]:
        """What ``crawler status`` shows: queue figures, nodes, per-host state. Plain
        data only (the wire is JSON)."""
        with self._lock:
            now = self.clock()
            held = collections.Counter(task.owner for task in self.board.leases.values())
            nodes = [
                {
                    "node": info.node,
                    "host": str(info.info.get("host", "")),
                    "pid": _whole(info.info.get("pid")),
                    "concurrency": _whole(info.info.get("concurrency")),
                    "leased": int(held.get(info.node, 0)),
                    "stored": info.stored,
                    "failed": info.failed,
                    "handed_back": info.handed_back,
                    "fault": info.fault,
                    "paused_s": round(max(info.paused_until - now, 0.0), 1),
                    "last_seen_s": round(now - info.last_seen, 1),
                }
                for info in sorted(self.nodes.values(), key=lambda i: i.node)
            ]
            return {
                "queue": {**self.board.counts(), "nodes": len(self.nodes)},
                "crawl": dict(self.crawl_info),
                "nodes": nodes,
                "hosts": self.politeness.snapshot(now, limit=50),
                "done": self.closed,
            }

    # -- local: called by the harvester -------------------------------------------

    def figures(self) -> QueueFigures:
        """The queue's figures now, read under the lock (the metrics' scrapes call it,
        from their own thread)."""
        with self._lock:
            now = self.clock()
            counts = self.board.counts()
            held = collections.Counter(task.owner for task in self.board.leases.values())
            counters = self.board.counters
            return QueueFigures(
                tasks={state: counts[state] for state in ("waiting", "leased", "stored", "failed")},
                nodes=len(self.nodes),
                nodes_paused=sum(1 for info in self.nodes.values() if info.paused_until > now),
                hosts=self.politeness.host_states(now),
                host_tasks=self.board.host_table(),
                node_tasks={
                    info.node: {
                        "leased": held.get(info.node, 0),
                        "stored": info.stored,
                        "failed": info.failed,
                    }
                    for info in self.nodes.values()
                },
                counters=BoardCounters(counters.retries, dict(counters.taken_back)),
                closed=self.closed,
            )

    def set_crawl_info(self, info: dict[str, Any]) -> None:
        """Figures only the harvester knows (pages, frontier, seeds), for ``status``."""
        with self._lock:
            self.crawl_info = {k: v for k, v in info.items() if v is not None}

    def add_tasks(
        self, items: Iterable[tuple[str, str, str]], limit: float = float("inf")
    ) -> tuple[list[Task], int]:
        """Queue ``(url, page, kind)`` items, at most ``limit`` new ones; returns the tasks
        that were new and how many new URLs did not fit."""
        with self._wake:
            added, left_out = self.board.add_many(items, limit, time.time())
            if added:
                self._wake.notify_all()
        return added, left_out

    def add_refused(self, items: Iterable[tuple[str, str, str]], error: str) -> list[Task]:
        """Record ``(url, page, kind)`` items that will not be fetched; they come back
        from ``take_updates`` as final failures, like any other."""
        with self._lock, Transaction(self.board.db):
            refused = [self.board.add_refused(*item, error) for item in items]
            refused = [task for task in refused if task is not None]
            self._finished += refused
        return refused

    def maintain(self) -> None:
        """Take back overdue leases and the leases of nodes silent for too long."""
        with self._wake:
            now = self.clock()
            self._finished += self.board.expire(now)
            for node in [n for n, i in self.nodes.items() if now - i.last_seen > self.node_timeout]:
                del self.nodes[node]
                self._finished += self.board.release_node(node, now)
                self._events.append(("node_lost", {"node": node}))
            self._wake.notify_all()

    def wait_for_updates(self, timeout: float) -> None:
        """Wait until a task has become final or a node event is waiting (at most
        ``timeout`` s): the harvester's main loop sleeps here when it has no pages."""
        with self._wake:
            if not self._finished and not self._events:
                self._wake.wait(timeout)

    def take_updates(self) -> tuple[list[Task], list[tuple[str, dict[str, Any]]]]:
        """Tasks that became final and node events since the last call."""
        with self._lock:
            finished, self._finished = self._finished, []
            events, self._events = self._events, []
        return finished, events

    def note_event(self, name: str, fields: dict[str, Any]) -> None:
        """Record an event for the progress log; thread-safe (the server's threads call it)."""
        with self._lock:
            self._events.append((name, dict(fields)))

    def unrecorded(self) -> list[Task]:
        with self._lock:
            return self.board.unrecorded()

    def mark_recorded(self, tasks: list[Task], manifest_bytes: int | None = None) -> None:
        with self._lock:
            self.board.mark_recorded(tasks, manifest_bytes)

    def recorded_manifest_bytes(self) -> int | None:
        with self._lock:
            return self.board.recorded_manifest_bytes()

    # -- politeness for the harvester's own requests -----------------------------

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        with self._lock:
            self.politeness.set_crawl_delay(host, seconds)

    def set_page_hosts(self, hosts: set[str]) -> None:
        """Hosts whose pages wait for a slot: leases keep one slot of each free."""
        with self._lock:
            self.board.page_hosts = hosts

    def take_page_slots(self, hosts: list[str], limit: int) -> list[tuple[bool, float | None]]:
        """A slot for the harvester to fetch a page of each host in turn, under one
        lock, until ``limit`` are granted: ``(granted, start_in)`` per host (hosts after
        the limit are not granted). Pages count against the same per-host limits as
        images."""
        slots: list[tuple[bool, float | None]] = []
        granted = 0
        with self._lock:
            now = self.clock()
            for host in hosts:
                slot = self._page_slot(host, now) if granted < limit else (False, None)
                granted += slot[0]
                slots.append(slot)
        return slots

    def _page_slot(self, host: str, now: float) -> tuple[bool, float | None]:
        busy = self.politeness.state(host).in_flight
        if self.politeness.room(host, now, PAGE_FETCHER) <= 0 or (
            busy and self.politeness.limits(host)[1] > 0  # a delayed host: one at a time
        ):
            return False, None
        return True, self.politeness.grant(host, now, PAGE_FETCHER)

    def release_page_slots(self, outcomes: list[tuple[str, int | None, str | None]]) -> None:
        """Give back page slots, ``(host, status, error)`` each, under one lock; the
        outcomes feed the per-host backoff as images' results do."""
        with self._wake:
            now = self.clock()
            for host, status, error in outcomes:
                self.politeness.release(host, now, PAGE_FETCHER)
                self.politeness.feedback(host, Result(0, host, status=status, error=error), now)
            self._wake.notify_all()

    def host_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.politeness.snapshot(self.clock())

    def close(self) -> None:
        """No more work will come: leases from now on answer ``done``."""
        with self._wake:
            self.closed = True
            self._wake.notify_all()

    def all_final(self) -> bool:
        with self._lock:
            return self.board.all_final

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {**self.board.counts(), "nodes": len(self.nodes)}

    def _seen(self, node: str) -> None:
        info = self.nodes.get(node)
        if info is None:
            # A node we declared lost is talking again: welcome it back.
            self.nodes[node] = info = NodeInfo(str(node), {}, self.clock())
            self._events.append(("node_joined", {"node": node, "rejoined": True}))
        info.last_seen = self.clock()


def _whole(value: Any) -> int:
    """A count a node told about itself (``join``'s info), 0 unless a plain integer."""
    return value if type(value) is int and 0 <= value < 2**63 else 0
