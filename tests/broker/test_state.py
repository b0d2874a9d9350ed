"""SQLite crawl state: the frontier, the metadata, and reopening after a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from crawler.broker import state as state_module
from crawler.broker.board import TaskBoard
from crawler.broker.state import SCHEMA_VERSION, CrawlState, PageFrontier, open_database
from crawler.errors import StateError
from crawler.records import Result

SEEDS = ["http://site.test/"]


def test_frontier_hands_out_pages_once_in_order():
    frontier = PageFrontier(open_database(":memory:"))
    assert frontier.add("http://site.test/a", 1)
    assert not frontier.add("http://site.test/a", 2), "a seen page is not queued again"
    assert frontier.add_many([("http://site.test/b", 1), ("http://site.test/a", 1)]) == 1
    assert frontier.take(1) == [("http://site.test/a", 1, "")]
    assert frontier.take(5) == [("http://site.test/b", 1, "")]
    assert frontier.take(5) == []
    assert frontier.count("fetching") == 2


def test_frontier_reopen_requeues_only_pages_in_flight():
    frontier = PageFrontier(open_database(":memory:"))
    frontier.add_many([(f"http://site.test/{n}", 1) for n in range(3)])
    first, second = frontier.take(2)
    frontier.finish(first[0], "done")
    assert frontier.reopen() == 1
    assert frontier.take(5) == [second, ("http://site.test/2", 1, "")]


def test_redirect_targets_count_as_seen():
    frontier = PageFrontier(open_database(":memory:"))
    frontier.mark_seen("http://site.test/moved")
    assert not frontier.add("http://site.test/moved", 1)
    assert frontier.take(5) == []


def test_a_page_put_back_waits_for_its_due_time_and_its_failures_survive_a_restart(
    tmp_path: Path,
):
    state = CrawlState(tmp_path, SEEDS)
    (seed,) = state.frontier.take(5, now=10.0)
    assert state.frontier.record_failure(seed[0]) == 1
    state.frontier.requeue(seed[0], due=15.0)
    assert state.frontier.take(5, now=14.9) == []
    assert state.frontier.count("queued") == 1, "waiting is still queued: the crawl goes on"
    assert state.frontier.take(5, now=15.0) == [seed]
    assert state.frontier.record_failure(seed[0]) == 2
    state.frontier.requeue(seed[0], due=5000.0)
    state.close()

    again = CrawlState(tmp_path, SEEDS)  # a new process: its clock starts elsewhere
    assert again.frontier.take(5, now=0.0) == [seed], "due at once after a restart"
    assert again.frontier.record_failure(seed[0]) == 3, "failed tries are kept"
    again.close()


def test_an_older_database_gains_the_page_retry_columns(tmp_path: Path):
    old = sqlite3.connect(tmp_path / "crawl.db")
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE pages (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,"
        " depth INTEGER NOT NULL, state TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('seeds', '[\"http://site.test/\"]');"
        "INSERT INTO pages (url, depth, state) VALUES ('http://site.test/', 0, 'fetching');"
    )
    old.commit()
    old.close()
    state = CrawlState(tmp_path, SEEDS)
    assert state.resumed and state.frontier.take(5, now=0.0) == [("http://site.test/", 0, "")]
    assert state.frontier.record_failure("http://site.test/") == 1
    assert state.held.empty()
    state.close()


def test_held_images_wait_per_robots_txt_and_survive_a_restart(tmp_path: Path):
    cdn, other = "http://cdn.test/robots.txt", "http://other.test/robots.txt"
    items = [(f"http://cdn.test/{n}.png", "http://site.test/", "img_src") for n in range(3)]
    state = CrawlState(tmp_path, SEEDS)
    assert state.held.empty() and state.held.hold(cdn, [], due=0.0) == 0
    assert state.held.empty(), "nothing held, nothing waits"
    assert state.held.hold(cdn, items[:2], due=11.0) == 2
    assert state.held.hold(cdn, items, due=99.0) == 1, "each URL once; the due time stays"
    assert state.held.hold(other, [("http://other.test/x.png", "p", "img_src")], due=20.0) == 1
    assert state.held.due(10.0) == [] and state.held.due(11.0) == [cdn]
    assert state.held.record_failed_check(cdn, due=30.0) == 2, "the read that held them: 1"
    assert state.held.due(25.0) == [other]
    state.held.postpone(other, 40.0)
    assert state.held.due(35.0) == [cdn]
    state.close()

    again = CrawlState(tmp_path, SEEDS)
    assert sorted(again.held.due(0.0)) == [cdn, other]
    assert again.held.record_failed_check(cdn, due=1.0) == 3, "failed checks are kept"
    assert again.held.batch(cdn, limit=2) == items[:2]
    again.held.release(cdn, [url for url, _, _ in items[:2]])
    assert again.held.batch(cdn) == items[2:]
    again.held.release(cdn, [items[2][0]])
    assert again.held.batch(cdn) == [] and again.held.due(100.0) == [other]
    again.held.release(other, ["http://other.test/x.png"])
    assert again.held.empty()
    again.close()


def test_crawl_state_new_resumed_and_finished(tmp_path: Path):
    state = CrawlState(tmp_path, SEEDS)
    assert (state.is_new, state.resumed, state.finished) == (True, False, False)
    assert state.frontier.take(5) == [("http://site.test/", 0, "")]
    state.close()

    again = CrawlState(tmp_path, SEEDS)
    assert (again.is_new, again.resumed) == (False, True)
    assert again.frontier.take(5) == [("http://site.test/", 0, "")], "in flight at the stop"
    again.mark_finished()
    again.close()
    assert CrawlState(tmp_path, SEEDS).finished


def test_crawl_state_refuses_other_seeds(tmp_path: Path):
    CrawlState(tmp_path, SEEDS).close()
    with pytest.raises(StateError, match="other seeds"):
        CrawlState(tmp_path, ["http://other.test/"])


def test_task_board_survives_a_restart(tmp_path: Path):
    path = tmp_path / "crawl.db"
    board = TaskBoard(30.0, 3, open_database(path))
    board.add_many([(f"http://img.test/{n}.png", "http://site.test/", "img_src") for n in range(4)])
    leased = board.lease("n1", 3, now=100.0)
    board.complete(
        "n1", Result.from_wire({"id": leased[0].id, "outcome": "stored", "bytes": 5}), 101.0, 0.5
    )
    board.complete(
        "n1",
        Result.from_wire(
            {"id": leased[1].id, "outcome": "failed", "retryable": True, "retry_after": 500}
        ),
        101.0,
        0.5,
    )
    board.db.close()

    # A new process: its clock starts elsewhere; every unfinished task is due at once.
    reopened = TaskBoard(30.0, 3, open_database(path))
    assert reopened.counts() == {"tasks": 4, "leased": 0, "stored": 1, "failed": 0, "waiting": 3}
    again = reopened.lease("n2", 10, now=0.0)
    assert sorted(task.id for task in again) == [leased[1].id, leased[2].id, 4]
    assert reopened.tasks[leased[1].id].attempts == 2, "attempts are kept across restarts"
    assert [task.id for task in reopened.unrecorded()] == [leased[0].id]
    reopened.mark_recorded(reopened.unrecorded())
    assert reopened.unrecorded() == []


def test_retry_waits_for_retry_after_when_it_is_longer():
    board = TaskBoard(30.0, 3)
    board.add("http://img.test/a.png", "http://site.test/", "img_src")
    (task,) = board.lease("n1", 1, now=0.0)
    failure = Result(task.id, task.url, retryable=True, retry_after=7.0)
    assert board.complete("n1", failure, 0.0, 0.0) is None
    assert board.lease("n1", 1, now=6.9) == []
    assert [t.id for t in board.lease("n1", 1, now=7.0)] == [task.id]


def test_recorded_watermark_survives_a_restart_and_never_goes_back(tmp_path: Path):
    path = tmp_path / "crawl.db"
    board = TaskBoard(30.0, 3, open_database(path))
    board.add_many([(f"http://img.test/{n}.png", "http://site.test/", "img_src") for n in range(3)])
    leased = board.lease("n1", 3, now=1.0)
    done = [
        board.complete("n1", Result.from_wire({"id": t.id, "outcome": "stored"}), 2.0, 0.0)
        for t in leased
    ]
    assert [task.seq for task in done] == [1, 2, 3]
    board.mark_recorded(done[:2])  # a crash before the third manifest line
    board.mark_recorded(done[:1])  # an older batch changes nothing
    board.db.close()

    reopened = TaskBoard(30.0, 3, open_database(path))
    assert [task.id for task in reopened.unrecorded()] == [leased[2].id]
    refused = reopened.add_refused("http://img.test/x.png", "http://site.test/", "img", "robots")
    assert refused is not None and refused.seq == 4
    assert [task.seq for task in reopened.unrecorded()] == [3, 4]


# The first layout a crawl ever wrote (before pages kept their failures, before hosts,
# the finished order and held images), with its three task indexes; no version number.
FIRST_LAYOUT = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pages (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,
    depth INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX pages_by_state ON pages (state, id);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, page TEXT NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT, deadline REAL NOT NULL DEFAULT 0, due REAL NOT NULL DEFAULT 0, result TEXT,
    recorded INTEGER NOT NULL DEFAULT 0);
CREATE INDEX tasks_waiting ON tasks (state, due, id);
CREATE INDEX tasks_leased ON tasks (state, deadline);
CREATE INDEX tasks_unrecorded ON tasks (recorded, state);
INSERT INTO meta VALUES ('seeds', '["http://site.test/"]');
INSERT INTO pages (url, depth, state) VALUES ('http://site.test/', 0, 'done');
INSERT INTO tasks (url, page, kind, state) VALUES
    ('http://img.test:8080/a.png', 'http://site.test/', 'img_src', 'pending');
"""


def schema_of(db: sqlite3.Connection) -> dict[str, list[str]]:
    """Each table's columns (in any order) and the names of the indexes made by hand."""
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    layout = {
        table: sorted(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        for table in tables
    }
    layout["indexes"] = sorted(
        row[0]
        for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")
        if not row[0].startswith("sqlite_autoindex")
    )
    return layout


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_a_new_database_has_the_current_version_and_keeps_it(tmp_path: Path):
    CrawlState(tmp_path, SEEDS).close()
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION
    CrawlState(tmp_path, SEEDS).close()
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION


def test_the_first_layout_is_migrated_to_the_current_one(tmp_path: Path):
    old = sqlite3.connect(tmp_path / "crawl.db")
    old.executescript(FIRST_LAYOUT)
    old.close()
    state = CrawlState(tmp_path, SEEDS)
    assert state.resumed
    migrated = schema_of(state.pages_db)
    state.close()
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION
    assert migrated == schema_of(open_database(":memory:")), "the same as a new database"
    assert migrated["indexes"] == ["held_by_robots", "pages_by_state", "tasks_by_host"]
    with sqlite3.connect(tmp_path / "crawl.db") as db:
        task = db.execute("SELECT url, host, failures, finished_seq FROM tasks").fetchone()
    db.close()
    assert task == ("http://img.test:8080/a.png", "img.test:8080", 0, 0), "hosts filled in"


def test_a_database_of_the_current_layout_without_a_version_is_adopted(tmp_path: Path):
    before = sqlite3.connect(tmp_path / "crawl.db", isolation_level=None)
    for statement in state_module.SCHEMA_VERSION_1:
        before.execute(statement)
    before.execute("CREATE INDEX tasks_by_host ON tasks (state, host, due, id)")
    before.execute("""INSERT INTO meta VALUES ('seeds', '["http://site.test/"]')""")
    before.execute(
        "INSERT INTO pages (url, depth, state, attempts) "
        "VALUES ('http://site.test/', 0, 'fetching', 2)"
    )
    before.close()
    state = CrawlState(tmp_path, SEEDS)
    assert state.resumed and state.frontier.take(5) == [("http://site.test/", 0, "")]
    assert state.frontier.attempts("http://site.test/") == 2
    state.close()
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION


def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path):
    CrawlState(tmp_path, SEEDS).close()
    newer = sqlite3.connect(tmp_path / "crawl.db")
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(StateError, match="newer than this crawler knows"):
        CrawlState(tmp_path, SEEDS)
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION + 1


def test_a_step_that_fails_leaves_the_database_at_the_step_before(tmp_path: Path, monkeypatch):
    CrawlState(tmp_path, SEEDS).close()

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE pages ADD COLUMN half TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(state_module, "MIGRATIONS", (*state_module.MIGRATIONS, half_done))
    monkeypatch.setattr(state_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        CrawlState(tmp_path, SEEDS)
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION
    db = sqlite3.connect(tmp_path / "crawl.db")
    assert "half" not in schema_of(db)["pages"]
    db.close()


def test_tasks_of_a_version_1_crawl_get_an_unknown_queued_time(tmp_path: Path):
    before = sqlite3.connect(tmp_path / "crawl.db", isolation_level=None)
    state_module.MIGRATIONS[0](before)
    before.execute("PRAGMA user_version = 1")
    before.execute("""INSERT INTO meta VALUES ('seeds', '["http://site.test/"]')""")
    before.execute(
        "INSERT INTO tasks (url, page, kind, state, host) "
        "VALUES ('http://site.test/a.png', 'http://site.test/', 'img', 'pending', 'site.test')"
    )
    before.close()
    CrawlState(tmp_path, SEEDS).close()
    assert user_version(tmp_path / "crawl.db") == SCHEMA_VERSION == 4
    with sqlite3.connect(tmp_path / "crawl.db") as db:
        assert db.execute("SELECT queued_at FROM tasks").fetchall() == [(0.0,)]
    db.close()


def test_pages_keep_the_page_that_linked_them():
    frontier = PageFrontier(open_database(":memory:"))
    frontier.add("http://site.test/", 0)
    frontier.add_many([("http://site.test/a", 1)], referer="http://site.test/")
    frontier.add_many([("http://site.test/a", 2)], referer="http://site.test/other")  # seen
    assert frontier.take(5) == [
        ("http://site.test/", 0, ""),
        ("http://site.test/a", 1, "http://site.test/"),
    ]
