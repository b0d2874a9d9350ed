"""Task and result queues with leases, served to downloader nodes over TCP.

Guarantee (at-least-once, idempotent results): a task handed to a node is *leased*,
not forgotten. It stays with that node until a result for it arrives, until the lease
runs out (``lease_seconds`` without an ``extend``), or until the node is declared lost;
then it goes back to the queue. A second result for a task that is already final
changes nothing, so a task delivered twice is still reported once.

``TaskBoard`` is the pure bookkeeping (the caller passes the time); ``Broker`` adds the
lock, node registry and long-polling; ``serving.py`` serves it with a manager.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = frozenset({"stored", "failed"})
MAX_LEASE_WAIT = 2.0


@dataclass
class Task:
    id: int
    url: str
    page: str
    kind: str
    state: str = "pending"
    attempts: int = 0
    owner: str | None = None
    deadline: float = 0.0
    result: dict[str, Any] | None = None


def retry_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, jittered.

    ``jitter`` in [0, 1) spreads retries of many tasks so they do not arrive together.
    """
    # The exponent is capped too: 2.0 ** 1024 overflows, and max_attempts has no upper bound.
    return min(60.0, 2.0 ** min(attempt - 1, 6)) * (0.5 + jitter / 2)


@dataclass
class TaskBoard:
    """Tasks and their leases. Not thread-safe; every method takes ``now``."""

    lease_seconds: float
    max_attempts: int
    tasks: dict[int, Task] = field(default_factory=dict)
    by_url: dict[str, int] = field(default_factory=dict)
    pending: deque[int] = field(default_factory=deque)
    delayed: list[tuple[float, int]] = field(default_factory=list)
    leased: set[int] = field(default_factory=set)
    final: int = 0
    stored: int = 0

    def add(self, url: str, page: str, kind: str) -> Task | None:
        """Queue an image URL once; None when it was queued before."""
        if url in self.by_url:
            return None
        task = Task(id=len(self.tasks) + 1, url=url, page=page, kind=kind)
        self.tasks[task.id] = task
        self.by_url[url] = task.id
        self.pending.append(task.id)
        return task

    def lease(self, node: str, limit: int, now: float) -> list[Task]:
        """Hand up to ``limit`` due tasks to ``node`` until ``now + lease_seconds``."""
        self._promote_due(now)
        granted: list[Task] = []
        while self.pending and len(granted) < limit:
            task = self.tasks[self.pending.popleft()]
            if task.state != "pending":
                continue  # finalized by a late result while it waited in the queue
            task.state, task.owner = "leased", node
            task.deadline = now + self.lease_seconds
            task.attempts += 1
            self.leased.add(task.id)
            granted.append(task)
        return granted

    def extend(self, node: str, ids: Iterable[int], now: float) -> None:
        """Push back the deadline of leases ``node`` still holds (a heartbeat)."""
        for task_id in ids:
            task = self.tasks.get(task_id)
            if task is not None and task.state == "leased" and task.owner == node:
                task.deadline = now + self.lease_seconds

    def expire(self, now: float) -> list[Task]:
        """Take back leases whose deadline passed; returns the tasks that became final."""
        overdue = [t for t in map(self.tasks.get, self.leased) if t and t.deadline < now]
        return self._take_back(overdue, "lease_expired", now)

    def release_node(self, node: str, now: float) -> list[Task]:
        """Take back every lease of a node that left or was lost."""
        held = [t for t in map(self.tasks.get, self.leased) if t and t.owner == node]
        return self._take_back(held, "node_lost", now)

    def complete(self, node: str, result: dict[str, Any], now: float, jitter: float) -> Task | None:
        """Apply a downloader's result; returns the task if it became final.

        Idempotent: a result for a final task is ignored, and so is a failure reported
        by a node whose lease was taken back and given to another node.
        """
        task = self.tasks.get(result.get("id"))  # type: ignore[arg-type]
        if task is None or task.state in FINAL_STATES:
            return None
        stored = result.get("outcome") == "stored"
        if not stored and task.state == "leased" and task.owner != node:
            return None
        self.leased.discard(task.id)
        task.result = result
        if stored:
            return self._finish(task, "stored")
        if result.get("retryable") and task.attempts < self.max_attempts:
            task.state, task.owner = "pending", None
            due = now + retry_delay(task.attempts, jitter)
            heapq.heappush(self.delayed, (due, task.id))
            return None
        return self._finish(task, "failed")

    def next_due(self) -> float | None:
        return self.delayed[0][0] if self.delayed else None

    def counts(self) -> dict[str, int]:
        stored = self.stored
        return {
            "tasks": len(self.tasks),
            "leased": len(self.leased),
            "stored": stored,
            "failed": self.final - stored,
            "waiting": len(self.tasks) - self.final - len(self.leased),
        }

    @property
    def all_final(self) -> bool:
        return self.final == len(self.tasks)

    def _take_back(self, tasks: list[Task], reason: str, now: float) -> list[Task]:
        finished = []
        for task in tasks:
            self.leased.discard(task.id)
            if task.attempts >= self.max_attempts:
                task.result = {
                    "id": task.id,
                    "url": task.url,
                    "outcome": "failed",
                    "error": reason,
                    "node": task.owner,
                }
                finished.append(self._finish(task, "failed"))
            else:
                task.state, task.owner = "pending", None
                self.pending.appendleft(task.id)
        return finished

    def _finish(self, task: Task, state: str) -> Task:
        task.state = state
        self.final += 1
        self.stored += state == "stored"
        return task

    def _promote_due(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, task_id = heapq.heappop(self.delayed)
            if self.tasks[task_id].state == "pending":
                self.pending.append(task_id)


@dataclass
class NodeInfo:
    node: str
    info: dict[str, Any]
    last_seen: float


class Broker:
    """Thread-safe queues shared by the harvester and the manager's server threads.

    Remote methods (``join``, ``lease``, ``extend``, ``put_results``, ``leave``) take and
    return plain data only. Local methods are used by the harvester's main loop.
    """

    def __init__(
        self,
        lease_seconds: float,
        max_attempts: int,
        node_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = TaskBoard(lease_seconds, max_attempts)
        self.node_timeout = node_timeout
        self.clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self.closed = False
        self._finished: list[Task] = []
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._random = random.Random()

    # -- remote: called by downloader nodes through the manager ------------------

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        """Register a downloader; returns the timings it must respect."""
        with self._lock:
            known = node in self.nodes
            self.nodes[node] = NodeInfo(str(node), dict(info), self.clock())
            if not known:
                self._events.append(("node_joined", {"node": node, **info}))
        lease = self.board.lease_seconds
        return {"lease_seconds": lease, "heartbeat_seconds": min(lease, self.node_timeout) / 3}

    def lease(self, node: str, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """Lease up to ``limit`` tasks, waiting up to ``wait`` s for work to appear.

        ``done`` is True once the harvester has no more work at all: the node may exit.
        """
        deadline = time.monotonic() + min(max(float(wait), 0.0), MAX_LEASE_WAIT)
        with self._wake:
            while True:
                self._seen(node)
                if self.closed:
                    return {"tasks": [], "done": True}
                tasks = self.board.lease(node, max(int(limit), 0), self.clock())
                remaining = deadline - time.monotonic()
                if tasks or remaining <= 0:
                    return {"tasks": [[t.id, t.url] for t in tasks], "done": False}
                due = self.board.next_due()
                if due is not None:
                    remaining = min(remaining, max(due - self.clock(), 0.01))
                self._wake.wait(remaining)

    def extend(self, node: str, ids: list[int]) -> bool:
        """Heartbeat: keep the node alive and extend the leases it still holds."""
        with self._lock:
            self._seen(node)
            self.board.extend(node, ids, self.clock())
        return True

    def put_results(self, node: str, results: list[dict[str, Any]]) -> int:
        """Accept a batch of results; returns how many finished a task."""
        finished = 0
        with self._wake:
            self._seen(node)
            now = self.clock()
            for result in results:
                task = self.board.complete(node, result, now, self._random.random())
                if task is not None:
                    self._finished.append(task)
                    finished += 1
            self._wake.notify_all()
        return finished

    def leave(self, node: str) -> bool:
        """A node says goodbye: its leases (there should be none) go back to the queue."""
        with self._wake:
            if node in self.nodes:
                del self.nodes[node]
                self._finished += self.board.release_node(node, self.clock())
                self._events.append(("node_left", {"node": node}))
                self._wake.notify_all()
        return True

    # -- local: called by the harvester -------------------------------------------

    def add_tasks(self, items: Iterable[tuple[str, str, str]]) -> list[Task]:
        """Queue ``(url, page, kind)`` items; returns the tasks that were new."""
        with self._wake:
            added = [t for t in (self.board.add(*item) for item in items) if t is not None]
            if added:
                self._wake.notify_all()
        return added

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
