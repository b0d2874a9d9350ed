"""Putting final tasks back (``crawler/requeue.py``) on a real crawl state and manifest,
made by the real broker and manifest the way a harvester makes them."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.broker.broker import Broker
from crawler.broker.state import CrawlMeta, CrawlState, lock_state
from crawler.errors import OtherCrawl, StateError
from crawler.harvest.recorder import Recorder
from crawler.harvest.requeue import (
    check_stored_files,
    retry_failed,
    retry_matches,
    verify_crawl,
)
from crawler.output.manifest import MANIFEST_NAME, Manifest, read_manifest
from crawler.output.progress import ProgressLog
from crawler.records import error_code
from crawler.stats import CrawlStats
from crawler.storage import image_relative_name

SEEDS = ["http://site.test/"]
SITE = "http://site.test/"


class Crawl:
    """A harvester's state and manifest, filled through the real ``Broker`` and
    ``Manifest``: tasks queued, leased, reported by a node, recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.out = tmp_path / "out"
        self.state_dir = self.out / ".state"
        self.state_dir.mkdir(parents=True)
        self.open()

    def open(self) -> None:
        self.state = CrawlState(self.state_dir, SEEDS)
        self.broker = Broker(30.0, 3, 60.0, clock=lambda: 1000.0, db=self.state.tasks_db)
        self.manifest = Manifest(self.out)

    def close(self, finished: bool = True) -> None:
        if finished:
            self.state.mark_finished()
        self.manifest.close()
        self.state.close()

    def run(self, outcomes: dict[str, dict[str, Any]], node: str = "node-a") -> None:
        """Queue, lease and report ``{name: result}`` (a result without ``outcome`` is
        stored: its body is written under OUT), then record them."""
        self.broker.add_tasks([(SITE + name, SITE, "img") for name in outcomes])
        leased = self.broker.lease_batch(node, len(outcomes), wait=0)["tasks"]
        ids = {url: task_id for task_id, url, *_ in leased}
        results = []
        for name, result in outcomes.items():
            url = SITE + name
            if "outcome" not in result:
                result = {**stored_result(self.out, url, result["body"]), "node": node}
            results.append({"id": ids[url], "url": url, **result})
        self.broker.report_results(node, results)
        self.record()

    def record(self, mark: bool = True) -> None:
        """What the harvester's loop does with final tasks: lines, then the watermark."""
        finished, _ = self.broker.take_updates()
        with self.manifest.batch():
            for task in finished:
                self.manifest.write_line(task.line)
        if mark:
            self.broker.mark_recorded(finished, self.manifest.size())

    def meta(self, key: str) -> Any:
        return CrawlMeta(self.state.pages_db).get(key)

    def task(self, name: str) -> dict[str, Any]:
        row = self.state.pages_db.execute(
            "SELECT state, attempts, failures, result, owner, due, finished_seq FROM tasks "
            "WHERE url = ?",
            (SITE + name,),
        ).fetchone()
        keys = ("state", "attempts", "failures", "result", "owner", "due", "finished_seq")
        return dict(zip(keys, row, strict=True)) if row else {}

    def manifest_urls(self) -> list[str]:
        return [record["url"] for record in read_manifest(self.out / MANIFEST_NAME)]


def stored_result(out: Path, url: str, body: bytes) -> dict[str, Any]:
    sha256 = hashlib.sha256(body).hexdigest()
    relative = image_relative_name(url, sha256, "png")
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    (out / relative).write_bytes(body)
    return {"outcome": "stored", "path": relative, "sha256": sha256, "bytes": len(body)}


def failed(error: str, status: int | None = None) -> dict[str, Any]:
    return {"outcome": "failed", "error": error, "status": status, "retryable": False}


def stored(body: bytes) -> dict[str, Any]:
    return {"body": body}


@pytest.fixture
def crawl(tmp_path: Path) -> Crawl:
    crawl = Crawl(tmp_path)
    crawl.run(
        {
            "ok.png": stored(b"ok image"),
            "busy.png": failed("http_503", 503),
            "gone.png": failed("http_404", 404),
            "disk.png": failed("store_error: No space left on device"),
            "slow.png": failed("timeout: read timed out"),
        }
    )
    crawl.close()
    return crawl


# -- which failures are retried ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("http_503", "http_503"),
        ("store_error: No space left on device", "store_error"),
        ("robots_unreachable: timeout: read timed out", "robots_unreachable"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_the_error_code_is_the_text_before_the_first_colon(error: str | None, code: str):
    assert error_code(error) == code


def test_only_reasons_match_the_start_of_the_error_and_robots_refusals_need_naming():
    assert retry_matches("http_503", ["http_503", "store_error"])
    assert retry_matches("store_error: disk full", ["store_error"])
    assert retry_matches("http_503", ["http_5"])
    assert not retry_matches("http_404", ["http_503"])
    assert not retry_matches(None, ["http_503"])
    assert retry_matches("http_404", [])
    assert retry_matches("robots_unreachable: timeout", [])
    assert not retry_matches("robots_disallowed", [])
    assert retry_matches("robots_disallowed", ["robots_disallowed"])


# -- crawler harvest --retry-failed ------------------------------------------------------


def test_failed_images_go_back_as_new_and_leave_the_manifest(crawl: Crawl):
    manifest = crawl.out / MANIFEST_NAME
    kept_line = next(line for line in manifest.read_text().splitlines() if "ok.png" in line)

    summary = retry_failed(crawl.state_dir, crawl.out, SEEDS, [])

    assert summary.count == 4
    assert summary.line() == (
        "retrying 4 failed images (http_503: 1, http_404: 1, store_error: 1, timeout: 1)"
    )
    assert manifest.read_text() == kept_line + "\n"
    crawl.open()
    for name in ("busy.png", "gone.png", "disk.png", "slow.png"):
        assert crawl.task(name) == {
            "state": "pending",
            "attempts": 0,
            "failures": 0,
            "result": None,
            "owner": None,
            "due": 0,
            "finished_seq": 0,
        }
    assert crawl.task("ok.png")["state"] == "stored"
    assert crawl.meta("finished") is False
    assert crawl.meta("manifest_bytes") == manifest.stat().st_size
    assert not crawl.state.finished
    assert crawl.broker.counts() == {
        "tasks": 5,
        "leased": 0,
        "stored": 1,
        "failed": 0,
        "waiting": 4,
        "nodes": 0,
    }
    assert crawl.broker.unrecorded() == [], "nothing for a resume to write again"
    assert not list(crawl.out.glob("*.rewrite")), "the temporary manifest is renamed"


def test_a_retried_image_ends_with_one_manifest_line(crawl: Crawl):
    # slow.png became final last: its new result must still count as not yet written.
    retry_failed(crawl.state_dir, crawl.out, SEEDS, ["timeout"])
    crawl.open()
    (leased,) = crawl.broker.lease_batch("node-b", 10, wait=0)["tasks"]
    assert leased[1] == SITE + "slow.png"
    result = {**stored_result(crawl.out, SITE + "slow.png", b"now served"), "node": "node-b"}
    crawl.broker.report_results("node-b", [{"id": leased[0], **result}])
    (task,), _ = crawl.broker.take_updates()
    assert task.seq > crawl.meta("recorded_seq"), "a new result counts as not yet written"
    assert [t.url for t in crawl.broker.unrecorded()] == [task.url], "a crash loses no line"
    crawl.manifest.write_line(task.line)
    crawl.broker.mark_recorded([task], crawl.manifest.size())
    crawl.close()

    records = read_manifest(crawl.out / MANIFEST_NAME)
    names = ("ok.png", "busy.png", "gone.png", "disk.png", "slow.png")
    assert sorted(record["url"] for record in records) == sorted(SITE + n for n in names)
    slow = records[-1]
    assert (slow["url"], slow["outcome"], slow["attempts"], slow["leases"]) == (
        SITE + "slow.png",
        "stored",
        1,
        1,
    )


def test_only_retries_the_named_errors(crawl: Crawl):
    summary = retry_failed(crawl.state_dir, crawl.out, SEEDS, ["http_503", "store_error"])
    assert summary.line() == "retrying 2 failed images (http_503: 1, store_error: 1)"
    assert sorted(crawl.manifest_urls()) == [SITE + "gone.png", SITE + "ok.png", SITE + "slow.png"]
    crawl.open()
    assert crawl.task("gone.png")["state"] == "failed"
    assert crawl.task("disk.png")["state"] == "pending"


def test_nothing_to_retry_changes_nothing(crawl: Crawl):
    manifest = (crawl.out / MANIFEST_NAME).read_bytes()
    summary = retry_failed(crawl.state_dir, crawl.out, SEEDS, ["http_500"])
    assert summary.line() == "no failed images with an error starting http_500 to retry"
    assert (crawl.out / MANIFEST_NAME).read_bytes() == manifest
    crawl.open()
    assert crawl.state.finished, "a finished crawl stays finished"


def test_robots_refusals_wait_for_robots_txt_again_and_disallowed_ones_only_when_named(
    tmp_path: Path,
):
    crawl = Crawl(tmp_path)
    crawl.broker.add_refused([(SITE + "private.png", SITE, "img")], "robots_disallowed")
    crawl.broker.add_refused(
        [(SITE + "unread.png", SITE, "img")], "robots_unreachable: timeout: read timed out"
    )
    crawl.record()
    crawl.close()

    assert retry_failed(crawl.state_dir, crawl.out, SEEDS, []).count == 1
    crawl.open()
    held = crawl.state.pages_db.execute("SELECT url, robots FROM held_images").fetchall()
    assert held == [(SITE + "unread.png", SITE + "robots.txt")]
    assert crawl.task("unread.png") == {}, "not a task until robots.txt is read"
    assert crawl.state.held.due(now=0.0) == [SITE + "robots.txt"]
    assert crawl.manifest_urls() == [SITE + "private.png"]
    crawl.close()

    summary = retry_failed(crawl.state_dir, crawl.out, SEEDS, ["robots_disallowed"])
    assert summary.line() == "retrying 1 failed image (robots_disallowed: 1)"
    crawl.open()
    assert crawl.state.held.batch(SITE + "robots.txt") == [
        (SITE + "unread.png", SITE, "img"),
        (SITE + "private.png", SITE, "img"),
    ]
    assert crawl.manifest_urls() == []


def test_lines_a_crash_left_unmarked_are_written_once_by_the_resume(tmp_path: Path):
    crawl = Crawl(tmp_path)
    crawl.run({"a.png": stored(b"a"), "b.png": failed("http_503", 503)})
    # Killed after the manifest line of c.png, before its watermark: a resume writes
    # c.png's line only if it is not in the manifest after the recorded size.
    crawl.broker.add_tasks([(SITE + "c.png", SITE, "img")])
    (leased,) = crawl.broker.lease_batch("node-a", 1, wait=0)["tasks"]
    crawl.broker.report_results("node-a", [{"id": leased[0], **failed("http_404", 404)}])
    crawl.record(mark=False)
    crawl.close(finished=False)
    assert len(crawl.manifest_urls()) == 3

    retry_failed(crawl.state_dir, crawl.out, SEEDS, ["http_503"])
    assert crawl.manifest_urls() == [SITE + "a.png"]

    crawl.open()
    log = ProgressLog(crawl.out / "progress.log")  # the resume's manifest repair, for real
    Recorder(crawl.broker, crawl.manifest, log, CrawlStats()).record_missing_lines()
    log.close()
    crawl.close(finished=False)
    assert crawl.manifest_urls() == [SITE + "a.png", SITE + "c.png"]


def test_retrying_refuses_while_a_harvester_runs(crawl: Crawl):
    lock = lock_state(crawl.state_dir)
    try:
        with pytest.raises(StateError, match="a harvester is running on the state folder"):
            retry_failed(crawl.state_dir, crawl.out, SEEDS, [])
    finally:
        lock.close()
    assert len(crawl.manifest_urls()) == 5


def test_retrying_needs_the_crawls_state_and_seeds(crawl: Crawl, tmp_path: Path):
    with pytest.raises(StateError, match="no crawl state in"):
        retry_failed(tmp_path / "nowhere", crawl.out, SEEDS, [])
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(OtherCrawl, match="other seeds"):
        retry_failed(crawl.state_dir, crawl.out, ["http://other.test/"], [])
    assert len(crawl.manifest_urls()) == 5


# -- crawler verify ------------------------------------------------------------------------


@pytest.fixture
def verified_crawl(tmp_path: Path) -> Crawl:
    crawl = Crawl(tmp_path)
    crawl.run({name: stored(name.encode() * 100) for name in ("a.png", "b.png", "c.png")})
    crawl.run({"d.png": stored(b"d" * 100), "e.png": failed("http_404", 404)}, node="node-x")
    crawl.close()
    return crawl


def stored_path(crawl: Crawl, name: str) -> Path:
    record = next(r for r in read_manifest(crawl.out / MANIFEST_NAME) if r["url"] == SITE + name)
    return crawl.out / record["path"]


def test_check_counts_ok_wrong_and_missing_files_by_node(verified_crawl: Crawl):
    crawl = verified_crawl
    with stored_path(crawl, "a.png").open("r+b") as handle:
        handle.truncate(10)
    stored_path(crawl, "b.png").write_bytes(b"b" * 99 + b"X")  # same size, other bytes
    stored_path(crawl, "d.png").unlink()

    found = check_stored_files(crawl.out)
    assert (found.checked, found.ok, found.missing) == (4, 1, 1)
    assert sorted(found.wrong) == [SITE + "a.png", SITE + "b.png"]
    assert dict(found.missing_by_node) == {"node-x": 1}
    assert found.missing_urls == set(), "kept only when they are to be re-queued"
    assert len(found.examples) == 3


def test_a_manifest_path_outside_out_is_wrong_and_never_opened(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    record = {"url": SITE + "x.png", "outcome": "stored", "path": "../secret.png", "bytes": 1}
    record["sha256"] = hashlib.sha256(b"x").hexdigest()
    (out / MANIFEST_NAME).write_text(json.dumps(record) + "\n")

    result = verify_crawl(out, out / ".state")
    assert result.files.wrong == {SITE + "x.png": "../secret.png"}
    assert outside.read_bytes() == b"x", "nothing outside OUT is deleted"
    assert not result.all_matched


def test_verify_deletes_wrong_files_and_requeues_them_missing_ones_only_when_asked(
    verified_crawl: Crawl,
):
    crawl = verified_crawl
    wrong = stored_path(crawl, "a.png")
    wrong.write_bytes(b"torn")
    stored_path(crawl, "d.png").unlink()

    result = verify_crawl(crawl.out, crawl.state_dir)
    assert not result.all_matched
    assert (result.requeued, result.deleted) == (1, 1)
    assert not wrong.exists()
    assert result.lines()[0] == (
        f"checked 4 stored images in {crawl.out}: 2 ok, 1 wrong content, 1 missing"
    )
    text = "\n".join(result.lines())
    assert "stored by node-x (1)" in text and "--requeue-missing" in text
    assert f"fetch 1 image again (crawler harvest {SITE} ...)" in text
    assert sorted(crawl.manifest_urls()) == [SITE + n for n in ("b.png", "c.png", "d.png", "e.png")]
    crawl.open()
    assert crawl.task("a.png")["state"] == "pending"
    assert crawl.task("d.png")["state"] == "stored"
    assert not crawl.state.finished
    crawl.close(finished=False)

    again = verify_crawl(crawl.out, crawl.state_dir, requeue_missing=True)
    assert (again.files.checked, again.files.missing, again.requeued) == (3, 1, 1)
    assert sorted(crawl.manifest_urls()) == [SITE + n for n in ("b.png", "c.png", "e.png")]

    assert verify_crawl(crawl.out, crawl.state_dir).all_matched
    crawl.open()
    assert crawl.task("d.png")["state"] == "pending"


def test_verify_without_the_state_deletes_but_cannot_requeue(verified_crawl: Crawl, tmp_path):
    crawl = verified_crawl
    stored_path(crawl, "c.png").write_bytes(b"torn")
    result = verify_crawl(crawl.out, tmp_path / "no-state")
    assert (result.requeued, result.deleted) == (0, 1)
    assert "nothing was re-queued (give --state)" in result.lines()[-1]
    assert len(crawl.manifest_urls()) == 5
    assert not (tmp_path / "no-state").exists()


def test_verify_refuses_while_a_harvester_runs_and_without_a_manifest(
    verified_crawl: Crawl, tmp_path: Path
):
    crawl = verified_crawl
    stored_path(crawl, "c.png").write_bytes(b"torn")
    lock = lock_state(crawl.state_dir)
    try:
        with pytest.raises(StateError, match="stop it before verifying"):
            verify_crawl(crawl.out, crawl.state_dir)
    finally:
        lock.close()
    assert stored_path(crawl, "c.png").read_bytes() == b"torn", "nothing changed"
    with pytest.raises(StateError, match="no manifest in"):
        verify_crawl(tmp_path / "empty", tmp_path / "empty" / ".state")


def test_a_retried_image_waits_from_its_new_queueing(crawl: Crawl):
    before = time.time()
    retry_failed(crawl.state_dir, crawl.out, SEEDS, ["http_503"])
    crawl.open()
    rows = dict(crawl.state.pages_db.execute("SELECT url, queued_at FROM tasks"))
    assert rows[SITE + "busy.png"] >= before  # the time from queued to stored counts anew
    assert rows[SITE + "ok.png"] < before and rows[SITE + "gone.png"] < before
