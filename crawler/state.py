"""The harvester's crawl state in SQLite (WAL), so that a crawl survives a restart.

One database file, ``STATE/crawl.db``, holds the pages (frontier and seen set), the
image tasks with their state, attempts, lease owner and last result, and a little
metadata. Nothing grows in memory with the size of the crawl: membership tests and
the queues are indexed queries.

Times stored with tasks (lease deadlines, retry due times) are monotonic-clock values
of the process that wrote them; ``reopen`` makes them meaningless-safe by putting
every leased or waiting task back in the queue, due at once.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from crawler.errors import OtherCrawl
from crawler.urls import host_of

DATABASE_NAME = "crawl.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    depth INTEGER NOT NULL,
    state TEXT NOT NULL  -- queued | fetching | done | failed | skipped
);
CREATE INDEX IF NOT EXISTS pages_by_state ON pages (state, id);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    page TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,  -- pending | leased | stored | failed
    attempts INTEGER NOT NULL DEFAULT 0,  -- times leased
    failures INTEGER NOT NULL DEFAULT 0,  -- retryable failures reported
    owner TEXT,
    deadline REAL NOT NULL DEFAULT 0,
    due REAL NOT NULL DEFAULT 0,
    result TEXT,
    recorded INTEGER NOT NULL DEFAULT 0,  -- (older crawls) 1 once in the manifest
    host TEXT NOT NULL DEFAULT '',  -- host[:port] of url, the unit of politeness
    finished_seq INTEGER NOT NULL DEFAULT 0  -- order of becoming final, 1, 2, 3 ...
);
"""
# One secondary index on tasks, on purpose: every lease and every result rewrites a
# task's state, and each index on state doubles that write. Leases are looked up per
# host (and the few leased tasks by state); unrecorded tasks only at a resume.
# Made after the columns it needs exist (a database from an older version gains them).
INDEXES = """
DROP INDEX IF EXISTS tasks_waiting;
DROP INDEX IF EXISTS tasks_leased;
DROP INDEX IF EXISTS tasks_unrecorded;
CREATE INDEX IF NOT EXISTS tasks_by_host ON tasks (state, host, due, id);
"""


def open_database(path: Path | str) -> sqlite3.Connection:
    """Open (creating) a crawl database; ``":memory:"`` for tests.

    WAL with ``synchronous=NORMAL``: a crash of the process loses nothing committed;
    a power failure may lose the last transactions, which the leases make safe.
    The connection may be used from several threads, one at a time (callers lock).
    """
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    # Checkpoints (which copy the WAL into the file and fsync it) every 64 MiB of WAL
    # rather than every 4 MiB: a busy queue commits many small batches.
    db.execute("PRAGMA wal_autocheckpoint=16384")
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "host" not in columns:
        db.create_function("host_of", 1, host_of, deterministic=True)
        db.executescript(
            "BEGIN; ALTER TABLE tasks ADD COLUMN host TEXT NOT NULL DEFAULT ''; "
            "UPDATE tasks SET host = host_of(url); COMMIT;"
        )
    if "finished_seq" not in columns:
        db.execute("ALTER TABLE tasks ADD COLUMN finished_seq INTEGER NOT NULL DEFAULT 0")
    db.executescript(INDEXES)
    return db


class Transaction:
    """``with Transaction(db):`` runs the block in one write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


class CrawlMeta:
    """Small facts about the crawl: its seeds and whether it has finished."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


class PageFrontier:
    """Pages to fetch, in the order found, and every page URL ever seen.

    Guarantee: a page is handed out by ``take`` once; after a restart (``reopen``),
    pages that were being fetched are handed out again, pages done are never.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def reopen(self) -> int:
        """Put pages that were in flight at a crash back in the queue; returns how many."""
        return self.db.execute(
            "UPDATE pages SET state = 'queued' WHERE state = 'fetching'"
        ).rowcount

    def add(self, url: str, depth: int) -> bool:
        """Queue a page unless it was seen before; True when it is new."""
        return bool(
            self.db.execute(
                "INSERT OR IGNORE INTO pages (url, depth, state) VALUES (?, ?, 'queued')",
                (url, depth),
            ).rowcount
        )

    def add_many(self, pages: list[tuple[str, int]]) -> int:
        with Transaction(self.db):
            return sum(self.add(url, depth) for url, depth in pages)

    def mark_seen(self, url: str) -> None:
        """Record a URL reached another way (a redirect target) as done."""
        self.db.execute(
            "INSERT OR IGNORE INTO pages (url, depth, state) VALUES (?, 0, 'done')", (url,)
        )

    def take(self, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` queued pages, oldest first, now marked as being fetched."""
        with Transaction(self.db):
            rows = self.db.execute(
                "SELECT id, url, depth FROM pages WHERE state = 'queued' ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
            self.db.executemany(
                "UPDATE pages SET state = 'fetching' WHERE id = ?", [(row[0],) for row in rows]
            )
        return [(url, depth) for _, url, depth in rows]

    def finish(self, url: str, state: str) -> None:
        self.db.execute("UPDATE pages SET state = ? WHERE url = ?", (state, url))

    def count(self, *states: str) -> int:
        marks = ",".join("?" * len(states))
        query = f"SELECT COUNT(*) FROM pages WHERE state IN ({marks})"
        return self.db.execute(query, states).fetchone()[0]


class CrawlState:
    """The crawl's database, opened for a harvester run: new, resumed, or finished.

    Two connections to the same file: one for the harvester's main thread (pages and
    metadata), one for the broker's task board (used under the broker's lock).
    """

    def __init__(self, state_dir: Path, seeds: list[str]) -> None:
        path = self.path = state_dir / DATABASE_NAME
        self.is_new = not path.exists()
        self.pages_db = open_database(path)
        self.tasks_db = open_database(path)
        self.meta = CrawlMeta(self.pages_db)
        self.frontier = PageFrontier(self.pages_db)
        known_seeds = self.meta.get("seeds")
        if known_seeds is None:
            with Transaction(self.pages_db):
                self.meta.set("seeds", seeds)
                for seed in seeds:
                    self.frontier.add(seed, 0)
            self.resumed = False
        elif known_seeds != seeds:
            self.close()
            raise OtherCrawl(
                f"the state folder {state_dir} holds a crawl of other seeds "
                f"({' '.join(known_seeds)}); give the same seeds to resume it, "
                "or another --state/--out for a new crawl"
            )
        else:
            self.frontier.reopen()
            self.resumed = True

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished"))

    def mark_finished(self) -> None:
        self.meta.set("finished", True)

    def stored_bytes(self) -> int:
        row = self.pages_db.execute(
            "SELECT COALESCE(SUM(json_extract(result, '$.bytes')), 0) FROM tasks "
            "WHERE state = 'stored'"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.pages_db.close()
        self.tasks_db.close()

    def remove(self) -> None:
        """Delete the (closed) database of a crawl that never started."""
        for suffix in ("", "-wal", "-shm"):
            (self.path.parent / (self.path.name + suffix)).unlink(missing_ok=True)
