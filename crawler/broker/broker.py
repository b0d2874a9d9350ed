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

import collections
import contextlib
import dataclasses
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from crawler.broker.politeness import Politeness
from crawler.broker.state import Transaction, open_database
from crawler.output.manifest import record_line
from crawler.urls import host_of

FINAL_STATES = frozenset({"stored", "failed"})
# Values of a result's ``local``: the node's own side failed, not the URL, and the task
# goes back without using an attempt.
LOCAL_STORAGE = "storage"  # the node cannot store files (disk full, read-only, ...)
LOCAL_POLICY = "policy"  # the node refuses an address the crawl allows
LOCAL_ERROR = "error"  # an unexpected exception on the node (a bug)
LOST_LEASES = ("lease_expired", "node_lost")  # errors of tasks whose leases ran out
MAX_LEASE_WAIT = 2.0
PAGE_FETCHER = "(harvester pages)"  # the politeness "node" of the harvester's own fetches


@dataclass
class Task:
    id: int
    url: str
    page: str
    kind: str
    state: str = "pending"
    attempts: int = 0  # times handed out
    failures: int = 0  # retryable failures reported (what max_attempts limits)
    owner: str | None = None
    deadline: float = 0.0
    result: dict[str, Any] | None = None
    start_in: float | None = None  # seconds from the lease to the request (host delay)
    spacing: float = 0.0  # the host's delay, which the node keeps between its requests
    host: str = ""  # host_of(url), known once leased
    seq: int = 0  # order in which tasks became final (0: not final)
    line: str | None = None  # the manifest line, encoded when the task became final


def counted_attempts(task: Task) -> int:
    """The tries of a final task that count against ``max_attempts``: each retryable
    failure counted, plus the try that ended it when that was an answer from the web
    (stored, or a failure that is not retried). Never counted: leases lost with a node,
    tasks handed back for a node's own fault, tries while the host was down. So it
    never exceeds ``max_attempts``; ``leases`` in the manifest says how often the task
    was handed out in all."""
    result = task.result or {}
    uncounted_end = (
        result.get("retryable") or result.get("local") or result.get("error") in LOST_LEASES
    )
    return task.failures + (0 if uncounted_end else 1)


def final_record(task: Task) -> dict[str, Any]:
    """The manifest record of a final task: one per image URL, whatever happened."""
    result = task.result or {}
    return {
        "url": task.url,
        "page": task.page,
        "kind": task.kind,
        "attempts": counted_attempts(task) if task.attempts else 0,
        "leases": task.attempts,
        "outcome": task.state,
        "status": result.get("status"),
        "error": result.get("error"),
        "path": result.get("path") if task.state == "stored" else None,
        "sha256": result.get("sha256"),
        "bytes": result.get("bytes"),
        "content_type": result.get("content_type"),
        "width": result.get("width"),
        "height": result.get("height"),
        "node": result.get("node"),
        "elapsed": result.get("elapsed"),
    }


def retry_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, jittered.

    ``jitter`` in [0, 1) spreads retries of many tasks so they do not arrive together.
    """
    # The exponent is capped too: 2.0 ** 1024 overflows, and max_attempts has no upper bound.
    return min(60.0, 2.0 ** min(attempt - 1, 6)) * (0.5 + jitter / 2)


_COLUMNS = "id, url, page, kind, state, attempts, failures, owner, deadline, result, finished_seq"
# A lease lost with its node (killed, cut off) is not the task's fault and does not
# count against max_attempts; only a task that loses this many leases is given up,
# so that an image which crashes every downloader cannot circulate for ever.
MAX_LOST_LEASES = 10


def _task(row: tuple) -> Task:
    task_id, url, page, kind, state, attempts, failures, owner, deadline, result, seq = row
    parsed = json.loads(result) if result else None
    task = Task(task_id, url, page, kind, state, attempts, failures, owner, deadline, parsed)
    task.seq = seq
    return task


class TaskView:
    """Read access to tasks by id, like a dict (``board.tasks[3].state``): a fresh
    snapshot from the database, or the lease when the task is leased."""

    def __init__(self, db: sqlite3.Connection, leases: dict[int, Task]) -> None:
        self._db = db
        self._leases = leases

    def get(self, task_id: Any, default: Task | None = None) -> Task | None:
        if not isinstance(task_id, int):
            return default
        leased = self._leases.get(task_id)
        if leased is not None:
            return dataclasses.replace(leased)
        row = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return default if row is None else _task(row)

    def __getitem__(self, task_id: int) -> Task:
        task = self.get(task_id)
        if task is None:
            raise KeyError(task_id)
        return task


class TaskBoard:
    """Tasks in SQLite, their leases in memory. Not thread-safe; every method takes ``now``.

    A lease is not written to the database: a harvester that restarts takes every
    lease back anyway (their deadlines belonged to the old process's clock), so the
    database only learns a task's outcome, or that it goes back to the queue. A leased
    task's row stays ``pending``; the lease queries skip the ids leased in memory.
    """

    def __init__(
        self,
        lease_seconds: float,
        max_attempts: int,
        db: sqlite3.Connection | None = None,
        politeness: Politeness | None = None,
    ) -> None:
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        # Without limits (unit tests, benchmarks of the queue) every host is unlimited.
        self.politeness = politeness or Politeness(concurrency=2**31 - 1)
        self.db = db if db is not None else open_database(":memory:")
        self.leases: dict[int, Task] = {}
        self.page_hosts: set[str] = set()  # hosts with pages waiting to be fetched
        self.leased_by_host: dict[str, set[int]] = {}
        self.tasks = TaskView(self.db, self.leases)
        with Transaction(self.db):
            self.db.execute(
                "UPDATE tasks SET state = 'pending', owner = NULL, deadline = 0, due = 0 "
                "WHERE state IN ('leased', 'pending')"
            )
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
        self.total = sum(counts.values())
        self.stored = counts.get("stored", 0)
        self.final = self.stored + counts.get("failed", 0)
        self.leased = 0
        self._turn = 0
        self.seq = self.db.execute("SELECT MAX(finished_seq) FROM tasks").fetchone()[0] or 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'recorded_seq'").fetchone()
        self.recorded_seq = int(row[0]) if row else 0
        # Hosts with pending tasks, in the order they are offered leases (round robin).
        self.pending_hosts: dict[str, int] = dict(
            self.db.execute(
                "SELECT host, COUNT(*) FROM tasks WHERE state = 'pending' GROUP BY host"
            )
        )

    def add(self, url: str, page: str, kind: str) -> Task | None:
        """Queue an image URL once; None when it was queued before."""
        host = host_of(url)
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO tasks (url, page, kind, state, host) "
            "VALUES (?, ?, ?, 'pending', ?)",
            (url, page, kind, host),
        )
        if not cursor.rowcount:
            return None
        self.total += 1
        self._pending(host, 1)
        return Task(id=cursor.lastrowid or 0, url=url, page=page, kind=kind)

    def add_refused(self, url: str, page: str, kind: str, error: str) -> Task | None:
        """Record an image URL that will not be fetched as failed at once (once per URL),
        so that the manifest still has a line for it."""
        result = {"url": url, "outcome": "failed", "error": error}
        task = Task(0, url, page, kind, state="failed", result=result)
        task.line = record_line(final_record(task))  # stored as _finish stores it
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO tasks (url, page, kind, state, result, host, finished_seq) "
            "VALUES (?, ?, ?, 'failed', ?, ?, ?)",
            (url, page, kind, task.line, host_of(url), self.seq + 1),
        )
        if not cursor.rowcount:
            return None
        self.seq += 1
        self.total += 1
        self.final += 1
        task.id, task.seq = cursor.lastrowid or 0, self.seq
        return task

    def add_many(
        self, items: Iterable[tuple[str, str, str]], limit: float = float("inf")
    ) -> tuple[list[Task], int]:
        """Queue new items until ``limit`` new ones are added; returns those and how many
        more new (never queued) URLs were left out."""
        added: list[Task] = []
        left_out: set[str] = set()
        with Transaction(self.db):
            for item in items:
                if len(added) < limit:
                    task = self.add(*item)
                    if task is not None:
                        added.append(task)
                elif not self.db.execute("SELECT 1 FROM tasks WHERE url = ?", item[:1]).fetchone():
                    left_out.add(item[0])
        return added, len(left_out)

    def lease(self, node: str, limit: int, now: float, nodes: int = 1) -> list[Task]:
        """Hand up to ``limit`` due tasks to ``node`` until ``now + lease_seconds``.

        Hosts take turns, and each host gets only what its politeness limits allow
        now, so a slow or throttled host never holds up the others; with ``nodes``
        nodes working, each gets a fair share of a host's limit. A task for a host with
        a delay carries ``start_in``: the seconds from now at which it may start.
        """
        if limit <= 0:
            return []
        deadline = now + self.lease_seconds
        granted: list[Task] = []
        hosts = list(self.pending_hosts)
        turn = self._turn % len(hosts) if hosts else 0
        self._turn += 1
        for host in hosts[turn:] + hosts[:turn]:
            reserve = 1 if host in self.page_hosts else 0
            room = self.politeness.room(host, now, node, nodes, reserve)
            room = min(room, limit - len(granted))
            if room <= 0:
                continue
            held = self.leased_by_host.setdefault(host, set())
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE state = 'pending' AND host = ? "
                "AND due <= ? ORDER BY due, id LIMIT ?",
                (host, now, room + len(held)),  # the held ones are pending rows too
            ).fetchall()
            rows = [row for row in rows if row[0] not in held][:room]
            spacing = self.politeness.limits(host)[1]
            for row in rows:
                task = _task(row)
                task.start_in = self.politeness.grant(host, now, node)
                task.spacing = spacing
                task.state, task.owner, task.deadline = "leased", node, deadline
                task.attempts += 1
                task.host = host
                self.leases[task.id] = task
                held.add(task.id)
                granted.append(task)
            self._pending(host, -len(rows))
            if len(granted) >= limit:
                break
        self.leased += len(granted)
        return granted

    def wake_time(self, now: float) -> float | None:
        """When a task that is not due now, or a host that is waiting out its delay,
        may be leasable (None when nothing pending waits on time)."""
        due = self.next_due()
        host_ready = self.politeness.wake_time(self.pending_hosts, now)
        times = [t for t in (due, host_ready) if t is not None and t > now]
        return min(times) if times else None

    def _pending(self, host: str, change: int) -> None:
        count = self.pending_hosts.get(host, 0) + change
        if count > 0:
            self.pending_hosts[host] = count
        else:
            self.pending_hosts.pop(host, None)

    def extend(self, node: str, ids: Iterable[int], now: float) -> None:
        """Push back the deadline of leases ``node`` still holds (a heartbeat)."""
        for task_id in ids:
            task = self.leases.get(task_id)
            if task is not None and task.owner == node:
                task.deadline = now + self.lease_seconds

    def expire(self, now: float) -> list[Task]:
        """Take back leases whose deadline passed; returns the tasks that became final."""
        overdue = [t for t in self.leases.values() if t.deadline < now]
        return self._take_back(overdue, "lease_expired")

    def release_node(self, node: str, now: float) -> list[Task]:
        """Take back every lease of a node that left or was lost."""
        return self._take_back([t for t in self.leases.values() if t.owner == node], "node_lost")

    def complete_many(
        self, node: str, results: list[dict[str, Any]], now: float, jitter: Callable[[], float]
    ) -> list[Task]:
        """``complete`` for a batch, reading its tasks in one query; returns the tasks
        that became final."""
        ids = [
            r.get("id")
            for r in results
            if isinstance(r.get("id"), int) and r.get("id") not in self.leases
        ]
        known: dict[int, Task] = {}
        for first in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[first : first + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id IN ({marks})", chunk)
            known.update((row[0], _task(row)) for row in rows)
        finished = []
        rows: list[tuple[Any, ...]] = []  # the final tasks' UPDATEs, run as one batch
        for result in results:
            task_id = result.get("id")
            task = self._apply(node, result, now, jitter(), self._current(task_id, known), rows)
            if task is not None:
                finished.append(task)
        self.db.executemany(_FINISH_SQL, rows)
        return finished

    def _current(self, task_id: Any, known: dict[int, Task]) -> Task | None:
        if not isinstance(task_id, int):
            return None
        return self.leases.get(task_id) or known.get(task_id)

    def complete(self, node: str, result: dict[str, Any], now: float, jitter: float) -> Task | None:
        """Apply a downloader's result; returns the task if it became final.

        Idempotent: a result for a final task is ignored, and so is a failure reported
        by a node whose lease was taken back and given to another node. A retry waits
        at least the server's ``Retry-After`` (``result["retry_after"]``).
        """
        task_id = result.get("id")
        task = self._current(task_id, {}) or self.tasks.get(task_id)
        return self._apply(node, result, now, jitter, task)

    def _apply(
        self,
        node: str,
        result: dict[str, Any],
        now: float,
        jitter: float,
        task: Task | None,
        rows: list[tuple[Any, ...]] | None = None,
    ) -> Task | None:
        """``complete`` for a task already read (the lease itself, when leased).

        With ``rows``, a task that becomes final has its UPDATE appended there for
        the caller to run (``complete_many`` runs a batch's at once), instead of now.
        """
        if task is None or task.state in FINAL_STATES:
            return None
        stored = result.get("outcome") == "stored"
        if not stored and task.state == "leased" and task.owner != node:
            return None
        local = not stored and bool(result.get("local"))
        if local and task.state != "leased":
            return None  # handed back after its lease was taken back: nothing to undo
        host = task.host or host_of(task.url)
        spared = False
        if task.state == "leased":
            self._end_lease(task, now)
            if not local:  # a node's own fault says nothing about the host
                spared = self.politeness.feedback(host, result, now)
        task.result = result
        if stored:
            return self._finish(task, "stored", rows)
        if local:
            # The node could not do it (its disk, its address policy, a bug): the task
            # goes back as it was, for another node or this one when it has recovered.
            # Only an exception on every node it meets (a bug the image triggers) ends
            # it, after as many hand-backs as lost leases would.
            handed_out = task.attempts - task.failures
            if result["local"] == LOCAL_ERROR and handed_out >= self._lost_lease_limit():
                return self._finish(task, "failed", rows)
            wait = 0.0
        elif result.get("retryable") and spared:
            # The host is down: it is paused, and the task keeps its attempts.
            wait = 0.0
        elif result.get("retryable") and task.failures + 1 < self.max_attempts:
            task.failures += 1
            wait = max(retry_delay(task.failures, jitter), float(result.get("retry_after") or 0))
        else:
            task.failures += bool(result.get("retryable"))
            return self._finish(task, "failed", rows)
        task.state, task.owner = "pending", None
        self.db.execute(
            "UPDATE tasks SET state = 'pending', owner = NULL, due = ?, result = ?, "
            "failures = ?, attempts = ? WHERE id = ?",
            (now + wait, json.dumps(result), task.failures, task.attempts, task.id),
        )
        self._pending(host, 1)
        return None

    def next_due(self) -> float | None:
        """When the earliest waiting task becomes due (None when nothing waits).
        One index seek per host with waiting tasks."""
        dues = [
            self.db.execute(
                "SELECT MIN(due) FROM tasks WHERE state = 'pending' AND host = ?", (host,)
            ).fetchone()[0]
            for host in self.pending_hosts
        ]
        dues = [due for due in dues if due is not None]
        return min(dues) if dues else None

    def unrecorded(self) -> list[Task]:
        """Final tasks whose manifest line may be missing (a crash came in between), in
        the order they became final. Read once, at a resume: a full scan is fine."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE state IN ('stored', 'failed') "
            "AND (finished_seq > ? OR (finished_seq = 0 AND recorded = 0)) "
            "ORDER BY finished_seq, id",
            (self.recorded_seq,),
        ).fetchall()
        return [_task(row) for row in rows]

    def mark_recorded(self, tasks: Iterable[Task], manifest_bytes: int | None = None) -> None:
        """The manifest has every task that became final up to the last of ``tasks``
        (the harvester records them in the order ``take_updates`` gave them), and was
        ``manifest_bytes`` long then: one write per batch, not per task. At a resume,
        lines past that size are the ones a crash may have left unmarked."""
        seq = max((task.seq for task in tasks), default=0)
        if seq <= self.recorded_seq:
            return
        self.recorded_seq = seq
        with Transaction(self.db):
            self._set_meta("recorded_seq", str(seq))
            if manifest_bytes is not None:
                self._set_meta("manifest_bytes", str(manifest_bytes))

    def recorded_manifest_bytes(self) -> int | None:
        """The manifest's size when the last batch was marked recorded (None: unknown,
        a crawl from an older version)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'manifest_bytes'").fetchone()
        return int(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def counts(self) -> dict[str, int]:
        return {
            "tasks": self.total,
            "leased": self.leased,
            "stored": self.stored,
            "failed": self.final - self.stored,
            "waiting": self.total - self.final - self.leased,
        }

    @property
    def all_final(self) -> bool:
        return self.final == self.total

    def _take_back(self, leased: list[Task], reason: str) -> list[Task]:
        finished = []
        with Transaction(self.db):
            for task in leased:
                host = self._end_lease(task)
                owner, task.state, task.owner, task.deadline = task.owner, "pending", None, 0.0
                if task.attempts - task.failures >= self._lost_lease_limit():
                    task.owner = owner
                    task.result = {
                        "id": task.id,
                        "url": task.url,
                        "outcome": "failed",
                        "error": reason,
                        "node": owner,
                    }
                    finished.append(self._finish(task, "failed"))
                else:
                    self.db.execute(
                        "UPDATE tasks SET attempts = ? WHERE id = ?", (task.attempts, task.id)
                    )
                    self._pending(host, 1)
        return finished

    def _lost_lease_limit(self) -> int:
        return max(MAX_LOST_LEASES, self.max_attempts)

    def _end_lease(self, task: Task, now: float | None = None) -> str:
        """Forget a lease (the task is final or back in the queue); returns its host."""
        host = task.host or host_of(task.url)
        self.leases.pop(task.id, None)
        self.leased_by_host.get(host, set()).discard(task.id)
        self.leased -= 1
        self.politeness.release(host, now, task.owner or "")
        return host

    def _finish(self, task: Task, state: str, rows: list[tuple[Any, ...]] | None = None) -> Task:
        """Make a task final. The database keeps its manifest record, encoded once here
        for the manifest too (the record has every result field anyone reads back)."""
        self.seq += 1
        task.state, task.seq = state, self.seq
        task.line = record_line(final_record(task))
        row = (
            state,
            task.line,
            task.failures,
            task.attempts,
            task.owner,
            task.seq,
            task.id,
        )
        if rows is None:
            self.db.execute(_FINISH_SQL, row)
        else:
            rows.append(row)
        self.final += 1
        self.stored += state == "stored"
        return task


_FINISH_SQL = (
    "UPDATE tasks SET state = ?, result = ?, failures = ?, attempts = ?, owner = ?, "
    "finished_seq = ? WHERE id = ?"
)


def _wire(task: Task) -> list[Any]:
    """``[id, url]``, or ``[id, url, start_in, spacing]`` for a host with a delay."""
    if task.start_in is None:
        return [task.id, task.url]
    return [task.id, task.url, task.start_in, task.spacing]


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


# A node that hands tasks back for its own faults gets no leases for a while, longer
# each time (its tasks go to healthy nodes meanwhile); storing something again resets it.
NODE_PAUSE_FIRST = 5.0
NODE_PAUSE_MAX = 60.0


def node_pause(fault_runs: int) -> float:
    """Seconds without leases for a node after its ``fault_runs``-th faulty batch."""
    return min(NODE_PAUSE_FIRST * 2.0 ** min(fault_runs - 1, 10), NODE_PAUSE_MAX)


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
        db: sqlite3.Connection | None = None,
        politeness: Politeness | None = None,
        user_agent: str = "",
        address_policy: dict[str, Any] | None = None,
    ) -> None:
        self.board = TaskBoard(lease_seconds, max_attempts, db, politeness)
        self.politeness = self.board.politeness
        self.user_agent = user_agent
        # The crawl's address policy (allow_private, allow_networks), told to every node
        # so that one that refuses more hands such tasks back instead of failing them.
        self.address_policy = address_policy
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
        reply = {"lease_seconds": lease, "heartbeat_seconds": min(lease, self.node_timeout) / 3}
        if self.user_agent:
            reply["user_agent"] = self.user_agent
        if self.address_policy is not None:
            reply["address_policy"] = self.address_policy
        return reply

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
                now = self.clock()
                if self.nodes[node].paused_until > now:
                    tasks = []  # failing on its own side: its share goes to the others
                else:
                    tasks = self.board.lease(node, max(int(limit), 0), now, self._healthy(now))
                remaining = deadline - time.monotonic()
                if tasks or remaining <= 0:
                    return {"tasks": [_wire(task) for task in tasks], "done": False}
                wake = self.board.wake_time(now)
                if wake is not None:
                    remaining = min(remaining, max(wake - now, 0.01))
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
        with self._wake, self._storage_guard():
            self._seen(node)
            now = self.clock()
            with Transaction(self.board.db):
                info = self.nodes[node]
                for task in self.board.complete_many(node, results, now, self._random.random):
                    self._finished.append(task)
                    finished += 1
                    info.stored += task.state == "stored"
                    info.failed += task.state == "failed"
            self._follow_node_faults(info, results, now)
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

    def _follow_node_faults(
        self, info: NodeInfo, results: list[dict[str, Any]], now: float
    ) -> None:
        """Pause a node that handed tasks back for its own faults (longer each time it
        fails again after a pause, said in the log); welcome it back once it stores
        again. Caller holds the lock."""
        local = [r for r in results if isinstance(r, dict) and r.get("local")]
        if local and info.paused_until > now:
            info.handed_back += len(local)  # the same run of faults: what it still held
        elif local:
            info.handed_back += len(local)
            info.fault_runs += 1
            info.fault = str(local[0].get("error") or local[0].get("local"))[:300]
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
        elif info.fault is not None and any(
            isinstance(r, dict) and r.get("outcome") == "stored" for r in results
        ):
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
                    "pid": int(info.info.get("pid", 0) or 0),
                    "concurrency": int(info.info.get("concurrency", 0) or 0),
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
            added, left_out = self.board.add_many(items, limit)
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

    def take_page_slot(self, host: str) -> tuple[bool, float | None]:
        """A slot for the harvester to fetch a page: ``(granted, start_in)``; pages count
        against the same per-host limits as images."""
        with self._lock:
            now = self.clock()
            busy = self.politeness.state(host).in_flight
            if self.politeness.room(host, now, PAGE_FETCHER) <= 0 or (
                busy and self.politeness.limits(host)[1] > 0  # a delayed host: one at a time
            ):
                return False, None
            return True, self.politeness.grant(host, now, PAGE_FETCHER)

    def release_page_slot(self, host: str, status: int | None, error: str | None) -> None:
        with self._wake:
            now = self.clock()
            self.politeness.release(host, now, PAGE_FETCHER)
            self.politeness.feedback(host, {"status": status, "error": error}, now)
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
