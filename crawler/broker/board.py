"""The task board: every image task in SQLite, their leases in memory.

Guarantee (at-least-once, idempotent results): a task handed to a node is *leased*,
not forgotten. It stays with that node until a result for it arrives, until the lease
runs out (``lease_seconds`` without an ``extend``), or until the node is declared lost;
then it goes back to the queue. A second result for a task that is already final
changes nothing, so a task delivered twice is still reported once.

Pure bookkeeping: not thread-safe, and every method is given the time (``broker.py``
adds the lock, the node registry and long-polling).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crawler.broker.politeness import Politeness
from crawler.broker.state import CrawlMeta, Transaction, open_database
from crawler.config import PolitenessConfig
from crawler.records import (
    FAILED,
    FINAL_STATES,
    LEASE_EXPIRED,
    LEASED,
    LOCAL_ERROR,
    LOST_LEASES,
    NODE_LOST,
    OPT_OUT,
    PENDING,
    STORED,
    ManifestRecord,
    Result,
    error_code,
    record_line,
)
from crawler.urls import host_of


@dataclass
class Task:
    id: int
    url: str
    page: str
    kind: str
    state: str = PENDING
    attempts: int = 0  # times handed out
    failures: int = 0  # retryable failures reported (what max_attempts limits)
    owner: str | None = None
    deadline: float = 0.0
    result: Result | None = None
    start_in: float | None = None  # seconds from the lease to the request (host delay)
    spacing: float = 0.0  # the host's delay, which the node keeps between its requests
    host: str = ""  # host_of(url), known once leased
    seq: int = 0  # order in which tasks became final (0: not final)
    line: str | None = None  # the manifest line, encoded when the task became final
    queued_at: float = 0.0  # Unix time it was queued (0: unknown, an older crawl)


@dataclass
class BoardCounters:
    """What the board did since it was made (counts only grow), for the metrics."""

    retries: int = 0  # failed fetches that go back to the queue to be tried again
    taken_back: dict[str, int] = field(default_factory=dict)  # reason -> leases taken back


def counted_attempts(task: Task) -> int:
    """The tries of a final task that count against ``max_attempts``: each retryable
    failure counted, plus the try that ended it when that was an answer from the web
    (stored, or a failure that is not retried). Never counted: leases lost with a node,
    tasks handed back for a node's own fault, tries while the host was down. So it
    never exceeds ``max_attempts``; ``leases`` in the manifest says how often the task
    was handed out in all."""
    result = task.result
    uncounted_end = result is not None and (
        result.retryable or bool(result.local) or result.error in LOST_LEASES
    )
    return task.failures + (0 if uncounted_end else 1)


def final_record(task: Task) -> ManifestRecord:
    """The manifest record of a final task: one per image URL, whatever happened."""
    result = task.result or Result(task.id, task.url)
    return ManifestRecord(
        url=task.url,
        page=task.page,
        kind=task.kind,
        attempts=counted_attempts(task) if task.attempts else 0,
        leases=task.attempts,
        outcome=task.state,
        status=result.status,
        error=result.error,
        path=result.path if task.state == STORED else None,
        sha256=result.sha256,
        bytes=result.bytes,
        content_type=result.content_type,
        width=result.width,
        height=result.height,
        node=result.node or None,
        elapsed=result.elapsed,
        opt_out=result.opt_out or _refused_opt_out(result.error),
    )


def _refused_opt_out(error: str | None) -> str | None:
    """The signal of an image refused for its page's opt-out (``opt_out: SIGNAL``)."""
    if error_code(error) != OPT_OUT:
        return None
    return (error or "").partition(":")[2].strip() or None


def retry_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, jittered.

    ``jitter`` in [0, 1) spreads retries of many tasks so they do not arrive together.
    """
    # The exponent is capped too: 2.0 ** 1024 overflows, and max_attempts has no upper bound.
    return min(60.0, 2.0 ** min(attempt - 1, 6)) * (0.5 + jitter / 2)


# Final tasks whose manifest line a crash may have lost (or left) after the last
# recorded batch (``recorded_seq``, the one parameter).
UNRECORDED = (
    "state IN ('stored', 'failed') AND (finished_seq > ? OR (finished_seq = 0 AND recorded = 0))"
)
_COLUMNS = (
    "id, url, page, kind, state, attempts, failures, owner, deadline, result, finished_seq, "
    "queued_at"
)


# A lease lost with its node (killed, cut off) is not the task's fault and does not
# count against max_attempts; only a task that loses this many leases is given up,
# so that an image which crashes every downloader cannot circulate for ever.
MAX_LOST_LEASES = 10


def _task(row: tuple) -> Task:
    task_id, url, page, kind, state, attempts, failures, owner, deadline, result, seq, queued = row
    # A final task's row holds its manifest record, a retried one its last result.
    parsed = Result.from_wire({**json.loads(result), "id": task_id}) if result else None
    task = Task(task_id, url, page, kind, state, attempts, failures, owner, deadline, parsed)
    task.seq, task.queued_at = seq, queued
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
        self.politeness = politeness or Politeness.from_config(
            PolitenessConfig(host_concurrency=2**31 - 1)
        )
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
        self.meta = CrawlMeta(self.db)
        self.recorded_seq = int(self.meta.get("recorded_seq") or 0)
        self.counters = BoardCounters()
        # (host, state) -> final tasks; read from the database when first asked for.
        self._final_by_host: dict[tuple[str, str], int] | None = None
        # Hosts with pending tasks, in the order they are offered leases (round robin).
        self.pending_hosts: dict[str, int] = dict(
            self.db.execute(
                "SELECT host, COUNT(*) FROM tasks WHERE state = 'pending' GROUP BY host"
            )
        )

    def add(self, url: str, page: str, kind: str, queued_at: float = 0.0) -> Task | None:
        """Queue an image URL once (``queued_at``: the Unix time); None when it was
        queued before."""
        host = host_of(url)
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO tasks (url, page, kind, state, host, queued_at) "
            "VALUES (?, ?, ?, 'pending', ?, ?)",
            (url, page, kind, host, queued_at),
        )
        if not cursor.rowcount:
            return None
        self.total += 1
        self._pending(host, 1)
        return Task(cursor.lastrowid or 0, url, page, kind, queued_at=queued_at)

    def add_refused(self, url: str, page: str, kind: str, error: str) -> Task | None:
        """Record an image URL that will not be fetched as failed at once (once per URL),
        so that the manifest still has a line for it."""
        task = Task(0, url, page, kind, state=FAILED, result=Result(0, url, error=error))
        task.line = record_line(final_record(task).to_wire())  # stored as _finish stores it
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
        self._count_final(host_of(url), FAILED)
        task.id, task.seq = cursor.lastrowid or 0, self.seq
        return task

    def add_many(
        self,
        items: Iterable[tuple[str, str, str]],
        limit: float = float("inf"),
        queued_at: float = 0.0,
    ) -> tuple[list[Task], int]:
        """Queue new items until ``limit`` new ones are added; returns those and how many
        more new (never queued) URLs were left out."""
        added: list[Task] = []
        left_out: set[str] = set()
        with Transaction(self.db):
            for item in items:
                if len(added) < limit:
                    task = self.add(*item, queued_at)
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
                task.state, task.owner, task.deadline = LEASED, node, deadline
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
        return self._take_back(overdue, LEASE_EXPIRED)

    def release_node(self, node: str, now: float) -> list[Task]:
        """Take back every lease of a node that left or was lost."""
        return self._take_back([t for t in self.leases.values() if t.owner == node], NODE_LOST)

    def complete_many(
        self, node: str, results: list[Result], now: float, jitter: Callable[[], float]
    ) -> list[Task]:
        """``complete`` for a batch, reading its tasks in one query; returns the tasks
        that became final."""
        ids = [r.id for r in results if r.id not in self.leases]
        known: dict[int, Task] = {}
        for first in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[first : first + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id IN ({marks})", chunk)
            known.update((row[0], _task(row)) for row in rows)
        finished = []
        rows: list[tuple[Any, ...]] = []  # the final tasks' UPDATEs, run as one batch
        for result in results:
            task = self._apply(node, result, now, jitter(), self._current(result.id, known), rows)
            if task is not None:
                finished.append(task)
        self.db.executemany(_FINISH_SQL, rows)
        return finished

    def _current(self, task_id: int, known: dict[int, Task]) -> Task | None:
        return self.leases.get(task_id) or known.get(task_id)

    def complete(self, node: str, result: Result, now: float, jitter: float) -> Task | None:
        """Apply a downloader's result; returns the task if it became final.

        Idempotent: a result for a final task is ignored, and so is a failure reported
        by a node whose lease was taken back and given to another node. A retry waits
        at least the server's ``Retry-After`` (``result.retry_after``).
        """
        task = self._current(result.id, {}) or self.tasks.get(result.id)
        return self._apply(node, result, now, jitter, task)

    def _apply(
        self,
        node: str,
        result: Result,
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
        stored = result.stored
        if not stored and task.state == LEASED and task.owner != node:
            return None
        local = not stored and bool(result.local)
        if local and task.state != LEASED:
            return None  # handed back after its lease was taken back: nothing to undo
        host = task.host or host_of(task.url)
        spared = False
        if task.state == LEASED:
            self._end_lease(task, now)
            if not local:  # a node's own fault says nothing about the host
                spared = self.politeness.feedback(host, result, now)
        task.result = result
        if stored:
            return self._finish(task, STORED, rows)
        if local:
            # The node could not do it (its disk, its address policy, a bug): the task
            # goes back as it was, for another node or this one when it has recovered.
            # Only an exception on every node it meets (a bug the image triggers) ends
            # it, after as many hand-backs as lost leases would.
            handed_out = task.attempts - task.failures
            if result.local == LOCAL_ERROR and handed_out >= self._lost_lease_limit():
                return self._finish(task, FAILED, rows)
            wait = 0.0
        elif result.retryable and spared:
            # The host is down: it is paused, and the task keeps its attempts.
            wait = 0.0
            self.counters.retries += 1
        elif result.retryable and task.failures + 1 < self.max_attempts:
            task.failures += 1
            wait = max(retry_delay(task.failures, jitter), result.retry_after or 0.0)
            self.counters.retries += 1
        else:
            task.failures += result.retryable
            return self._finish(task, FAILED, rows)
        task.state, task.owner = PENDING, None
        self.db.execute(
            "UPDATE tasks SET state = 'pending', owner = NULL, due = ?, result = ?, "
            "failures = ?, attempts = ? WHERE id = ?",
            (now + wait, json.dumps(result.to_wire()), task.failures, task.attempts, task.id),
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
            f"SELECT {_COLUMNS} FROM tasks WHERE {UNRECORDED} ORDER BY finished_seq, id",
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
            self.meta.set("recorded_seq", seq)
            if manifest_bytes is not None:
                self.meta.set("manifest_bytes", manifest_bytes)

    def recorded_manifest_bytes(self) -> int | None:
        """The manifest's size when the last batch was marked recorded (None: unknown,
        a crawl from an older version)."""
        size = self.meta.get("manifest_bytes")
        return None if size is None else int(size)

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
        if leased:
            taken = self.counters.taken_back
            taken[reason] = taken.get(reason, 0) + len(leased)
        with Transaction(self.db):
            for task in leased:
                host = self._end_lease(task)
                owner, task.state, task.owner, task.deadline = task.owner, PENDING, None, 0.0
                if task.attempts - task.failures >= self._lost_lease_limit():
                    task.owner = owner
                    task.result = Result(task.id, task.url, owner or "", error=reason)
                    finished.append(self._finish(task, FAILED))
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
        task.line = record_line(final_record(task).to_wire())
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
        self.stored += state == STORED
        self._count_final(task.host or host_of(task.url), state)
        return task

    def _count_final(self, host: str, state: str) -> None:
        if self._final_by_host is not None:
            key = (host, state)
            self._final_by_host[key] = self._final_by_host.get(key, 0) + 1

    def host_table(self) -> dict[str, dict[str, int]]:
        """Tasks per host and state (waiting, leased, stored, failed), zeros left out.
        The first call reads the final ones from the database (one scan); later calls
        are counted as tasks become final."""
        if self._final_by_host is None:
            rows = self.db.execute(
                "SELECT host, state, COUNT(*) FROM tasks "
                "WHERE state IN ('stored', 'failed') GROUP BY host, state"
            )
            self._final_by_host = {(host, state): count for host, state, count in rows}
        table: dict[str, dict[str, int]] = {}
        for host, count in self.pending_hosts.items():
            table.setdefault(host, {})["waiting"] = count
        for host, ids in self.leased_by_host.items():
            if ids:
                table.setdefault(host, {})["leased"] = len(ids)
        for (host, state), count in self._final_by_host.items():
            table.setdefault(host, {})[state] = count
        return table


_FINISH_SQL = (
    "UPDATE tasks SET state = ?, result = ?, failures = ?, attempts = ?, owner = ?, "
    "finished_seq = ? WHERE id = ?"
)
