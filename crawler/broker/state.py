"""The harvester's crawl state in SQLite (WAL), so that a crawl survives a restart.

One database file, ``STATE/crawl.db``, holds the pages (frontier and seen set, with
the failed tries of pages to be tried again), the image URLs held until their host's
robots.txt can be read, the image tasks with their state, attempts, the node that
finished them and their last result, and a little metadata. Nothing grows in memory
with the size of the crawl: membership tests and the queues are indexed queries.

Times stored with tasks, pages and held images (retry due times) are
monotonic-clock values of the process that wrote them; reopening makes them
meaningless-safe by putting every leased or waiting task back in the queue, and every
waiting page and held image, due at once (their counts of failed tries are kept).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from crawler.errors import OtherCrawl, StateError
from crawler.urls import host_of

DATABASE_NAME = "crawl.db"

# The layout, versioned with ``PRAGMA user_version``: ``MIGRATIONS[n]`` takes a database
# from version n to n + 1, each step in its own transaction. A new database runs them
# all; to change the layout, append a step (never edit one a crawl may have run).
SCHEMA_VERSION_1 = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pages (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        depth INTEGER NOT NULL,
        state TEXT NOT NULL,  -- queued | fetching | done | failed | skipped
        attempts INTEGER NOT NULL DEFAULT 0,  -- failed tries that are tried again
        due REAL NOT NULL DEFAULT 0  -- a queued page is not taken before this
    )""",
    "CREATE INDEX IF NOT EXISTS pages_by_state ON pages (state, id)",
    """CREATE TABLE IF NOT EXISTS held_images (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        page TEXT NOT NULL,
        kind TEXT NOT NULL,
        robots TEXT NOT NULL  -- the robots.txt URL they wait for
    )""",
    "CREATE INDEX IF NOT EXISTS held_by_robots ON held_images (robots, id)",
    """CREATE TABLE IF NOT EXISTS held_robots (
        robots TEXT PRIMARY KEY,
        checks INTEGER NOT NULL DEFAULT 1,  -- failed reads, the one that held its images first
        due REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS tasks (
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
    )""",
    # One secondary index on tasks, on purpose: every lease and every result rewrites a
    # task's state, and each index on state doubles that write. Leases are looked up per
    # host (and the few leased tasks by state); unrecorded tasks only at a resume.
    "DROP INDEX IF EXISTS tasks_waiting",
    "DROP INDEX IF EXISTS tasks_leased",
    "DROP INDEX IF EXISTS tasks_unrecorded",
)
# Columns that crawls from before the version number gained later, in that order.
_UNVERSIONED_ADDITIONS = (
    ("pages", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("pages", "due", "REAL NOT NULL DEFAULT 0"),
    ("tasks", "failures", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "host", "TEXT NOT NULL DEFAULT ''"),
    ("tasks", "finished_seq", "INTEGER NOT NULL DEFAULT 0"),
)


def _to_version_1(db: sqlite3.Connection) -> None:
    """Version 0 is a new database or one from before the version number, of any
    earlier layout: create what is missing, add the columns it lacks (filling in
    each task's host), and index tasks by host only."""
    for statement in SCHEMA_VERSION_1:
        db.execute(statement)
    for table, column, definition in _UNVERSIONED_ADDITIONS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            if (table, column) == ("tasks", "host"):
                db.create_function("host_of", 1, host_of, deterministic=True)
                db.execute("UPDATE tasks SET host = host_of(url)")
    db.execute("CREATE INDEX IF NOT EXISTS tasks_by_host ON tasks (state, host, due, id)")


def _to_version_2(db: sqlite3.Connection) -> None:
    """Tasks keep the Unix time they were queued (0 for those queued before), for the
    time from queued to stored (``crawler_image_queued_to_stored_seconds``)."""
    db.execute("ALTER TABLE tasks ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")


def _to_version_3(db: sqlite3.Connection) -> None:
    """Pages keep the page that linked them, for their ``Referer`` ('' for seeds and
    pages queued before)."""
    db.execute("ALTER TABLE pages ADD COLUMN referer TEXT NOT NULL DEFAULT ''")


def _to_version_4(db: sqlite3.Connection) -> None:
    """Pages keep, for a recrawl, the validators they were served with, what they
    referenced (``refs``: JSON, '' when not known) and what they referenced before
    the recrawl (``refs_before``, NULL outside one)."""
    db.execute("ALTER TABLE pages ADD COLUMN etag TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE pages ADD COLUMN last_modified TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE pages ADD COLUMN refs TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE pages ADD COLUMN refs_before TEXT")
    db.execute("ALTER TABLE pages ADD COLUMN outcome TEXT NOT NULL DEFAULT ''")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _to_version_1,
    _to_version_2,
    _to_version_3,
    _to_version_4,
)
SCHEMA_VERSION = len(MIGRATIONS)


def open_database(path: Path | str) -> sqlite3.Connection:
    """Open (creating or migrating) a crawl database; ``":memory:"`` for tests.

    WAL with ``synchronous=NORMAL``: a crash of the process loses nothing committed;
    a power failure may lose the last transactions, which the leases make safe.
    The connection may be used from several threads, one at a time (callers lock).
    A database of a newer layout than this code knows is refused (``StateError``).
    """
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    # Checkpoints (which copy the WAL into the file and fsync it) every 64 MiB of WAL
    # rather than every 4 MiB: a busy queue commits many small batches.
    db.execute("PRAGMA wal_autocheckpoint=16384")
    try:
        migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite3.Connection, path: Path | str = "the crawl database") -> None:
    """Bring ``db`` to ``SCHEMA_VERSION`` one step at a time; a step that fails leaves
    the database as it was before that step (the version is part of the step's
    transaction). Two processes opening the same database migrate it once."""
    while _schema_version(db) != SCHEMA_VERSION:
        with Transaction(db):
            version = _schema_version(db)  # again, under the write lock
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"the crawl state {path} has layout version {version}, newer than "
                    f"this crawler knows ({SCHEMA_VERSION}): resume it with the newer "
                    "crawler that wrote it, or give another --state for a new crawl"
                )
            if version < SCHEMA_VERSION:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")


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

    Guarantee: a page is handed out by ``take`` once, unless it is put back with
    ``requeue`` (to be tried again, not before its due time); after a restart
    (``reopen``), pages that were being fetched are handed out again, pages done are
    never. The failed tries of a page (``record_failure``) survive restarts, so its
    retries stay bounded.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def reopen(self) -> int:
        """Put pages that were in flight at a crash back in the queue, and make waiting
        ones due now (their due times belonged to the old process's clock); returns
        how many were in flight."""
        with Transaction(self.db):
            self.db.execute("UPDATE pages SET due = 0 WHERE due != 0")
            return self.db.execute(
                "UPDATE pages SET state = 'queued' WHERE state = 'fetching'"
            ).rowcount

    def add(self, url: str, depth: int, referer: str = "") -> bool:
        """Queue a page (``referer``: the page that linked it) unless it was seen
        before; True when it is new."""
        return bool(
            self.db.execute(
                "INSERT OR IGNORE INTO pages (url, depth, state, referer) "
                "VALUES (?, ?, 'queued', ?)",
                (url, depth, referer),
            ).rowcount
        )

    def add_many(self, pages: list[tuple[str, int]], referer: str = "") -> int:
        """Queue the pages one page linked (``referer``); returns how many were new."""
        with Transaction(self.db):
            return sum(self.add(url, depth, referer) for url, depth in pages)

    def mark_seen(self, url: str) -> None:
        """Record a URL reached another way (a redirect target) as done."""
        self.db.execute(
            "INSERT OR IGNORE INTO pages (url, depth, state) VALUES (?, 0, 'done')", (url,)
        )

    def take(self, limit: int, now: float = float("inf")) -> list[tuple[str, int, str]]:
        """Up to ``limit`` queued pages due at ``now``, oldest first, now marked as being
        fetched: (url, depth, the page that linked it or '')."""
        with Transaction(self.db):
            rows = self.db.execute(
                "SELECT id, url, depth, referer FROM pages WHERE state = 'queued' AND due <= ? "
                "ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            self.db.executemany(
                "UPDATE pages SET state = 'fetching' WHERE id = ?", [(row[0],) for row in rows]
            )
        return [(url, depth, referer) for _, url, depth, referer in rows]

    def finish(self, url: str, state: str) -> None:
        self.db.execute("UPDATE pages SET state = ? WHERE url = ?", (state, url))

    def record_failure(self, url: str) -> int:
        """Count a failed try of a page; returns its failed tries so far."""
        self.db.execute("UPDATE pages SET attempts = attempts + 1 WHERE url = ?", (url,))
        return self.attempts(url)

    def requeue(self, url: str, due: float) -> None:
        """Put a taken page back in the queue, to be taken again from ``due`` on."""
        self.db.execute("UPDATE pages SET state = 'queued', due = ? WHERE url = ?", (due, url))

    def attempts(self, url: str) -> int:
        row = self.db.execute("SELECT attempts FROM pages WHERE url = ?", (url,)).fetchone()
        return row[0] if row else 0

    def count(self, *states: str) -> int:
        marks = ",".join("?" * len(states))
        query = f"SELECT COUNT(*) FROM pages WHERE state IN ({marks})"
        return self.db.execute(query, states).fetchone()[0]

    def validators(self, url: str) -> tuple[str, str]:
        """The ETag and Last-Modified ``url`` was last served with ('' for none)."""
        row = self.db.execute(
            "SELECT etag, last_modified FROM pages WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else ("", "")

    def remember(self, url: str, validators: tuple[str, str], refs: str, outcome: str) -> None:
        """Keep what a fetched page referenced (``refs``, JSON) and its validators, for
        a recrawl; ``outcome`` is how it compared with the crawl before (recrawls)."""
        self.db.execute(
            "UPDATE pages SET etag = ?, last_modified = ?, refs = ?, outcome = ? WHERE url = ?",
            (*validators, refs, outcome, url),
        )

    def refs(self, url: str) -> tuple[str, str | None]:
        """What ``url`` referenced when last fetched, and before the recrawl (JSON)."""
        row = self.db.execute(
            "SELECT refs, refs_before FROM pages WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else ("", None)

    def queue_all_again(self) -> int:
        """Queue every page again (as new: no failed tries, due now), keeping what each
        referenced as ``refs_before``; returns how many were queued. Call it within a
        transaction (``CrawlState.start_recrawl``)."""
        return self.db.execute(
            "UPDATE pages SET state = 'queued', attempts = 0, due = 0, refs_before = refs, "
            "outcome = '' WHERE state IN ('done', 'failed', 'skipped')"
        ).rowcount

    def all_refs(self) -> Iterator[tuple[str, str, str | None, str]]:
        """(page, refs, refs_before, outcome) of every page."""
        yield from self.db.execute("SELECT url, refs, refs_before, outcome FROM pages")


class HeldImages:
    """Image URLs whose host's robots.txt could not be read yet, by robots.txt URL.

    Guarantee: an image stays held until ``release`` (after it was queued or recorded
    as failed elsewhere), whatever restarts come in between. Each robots.txt has a due
    time for its next check and a count of failed checks, which survives restarts.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def reopen(self) -> None:
        """Make every check due now (due times belonged to the old process's clock)."""
        self.db.execute("UPDATE held_robots SET due = 0 WHERE due != 0")

    def hold(self, robots: str, items: list[tuple[str, str, str]], due: float) -> int:
        """Hold ``(url, page, kind)`` items for ``robots``, whose read just failed (its
        first failed check); returns how many were new. A robots.txt already waiting
        keeps its due time and count."""
        if not items:
            return 0
        with Transaction(self.db):
            self.db.execute(
                "INSERT OR IGNORE INTO held_robots (robots, due) VALUES (?, ?)", (robots, due)
            )
            return sum(
                self.db.execute(
                    "INSERT OR IGNORE INTO held_images (url, page, kind, robots) "
                    "VALUES (?, ?, ?, ?)",
                    (*item, robots),
                ).rowcount
                for item in items
            )

    def due(self, now: float, limit: int = 100) -> list[str]:
        """robots.txt URLs whose images are due for a check at ``now``."""
        rows = self.db.execute(
            "SELECT robots FROM held_robots WHERE due <= ? ORDER BY due LIMIT ?", (now, limit)
        )
        return [row[0] for row in rows]

    def postpone(self, robots: str, due: float) -> None:
        self.db.execute("UPDATE held_robots SET due = ? WHERE robots = ?", (due, robots))

    def record_failed_check(self, robots: str, due: float) -> int:
        """Count a failed read of ``robots``, next check at ``due``; returns the count."""
        self.db.execute(
            "UPDATE held_robots SET checks = checks + 1, due = ? WHERE robots = ?", (due, robots)
        )
        row = self.db.execute("SELECT checks FROM held_robots WHERE robots = ?", (robots,))
        return next(iter(row), (0,))[0]

    def batch(self, robots: str, limit: int = 500) -> list[tuple[str, str, str]]:
        """Up to ``limit`` items held for ``robots``, oldest first: ``(url, page, kind)``."""
        rows = self.db.execute(
            "SELECT url, page, kind FROM held_images WHERE robots = ? ORDER BY id LIMIT ?",
            (robots, limit),
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def release(self, robots: str, urls: list[str]) -> None:
        """Let go of items that were queued or recorded; the robots.txt is forgotten
        with its last image."""
        with Transaction(self.db):
            self.db.executemany("DELETE FROM held_images WHERE url = ?", [(url,) for url in urls])
            if not self.db.execute(
                "SELECT 1 FROM held_images WHERE robots = ? LIMIT 1", (robots,)
            ).fetchone():
                self.db.execute("DELETE FROM held_robots WHERE robots = ?", (robots,))

    def empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM held_robots LIMIT 1").fetchone() is None


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
        self.held = HeldImages(self.pages_db)
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
            self.held.reopen()
            self.resumed = True

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished"))

    def mark_finished(self) -> None:
        self.meta.set("finished", True)

    @property
    def recrawls(self) -> int:
        """How many times this crawl was started again with ``--recrawl``."""
        return int(self.meta.get("recrawls") or 0)

    def start_recrawl(self) -> int:
        """Make a finished crawl a crawl again, in one transaction: every page queued
        (``PageFrontier.queue_all_again``), and the first task id a new image URL will
        get kept (``recrawl_first_task``); returns how many pages were queued."""
        with Transaction(self.pages_db):
            queued = self.frontier.queue_all_again()
            last = self.pages_db.execute("SELECT COALESCE(MAX(id), 0) FROM tasks").fetchone()
            self.meta.set("recrawl_first_task", int(last[0]) + 1)
            self.meta.set("recrawls", self.recrawls + 1)
            self.meta.set("finished", False)
        return queued

    def new_image_urls(self) -> list[str]:
        """Image URLs first found by the current recrawl."""
        first = int(self.meta.get("recrawl_first_task") or 0)
        rows = self.pages_db.execute("SELECT url FROM tasks WHERE id >= ? ORDER BY id", (first,))
        return [row[0] for row in rows]

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


def lock_state(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the state folder for as long as the harvester runs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "harvester.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateError(f"another harvester is using the state folder {state_dir}") from None
    return handle


@contextlib.contextmanager
def unwritable_is_a_state_error(path: Path) -> Iterator[None]:
    """A file or folder we cannot write (a full disk, say) is the user's to fix: one line."""
    try:
        yield
    except OSError as exc:
        raise StateError(f"cannot write to {exc.filename or path}: {exc.strerror or exc}") from None
