"""Final image tasks put back in the queue, so that the same ``crawler harvest`` fetches
them again.

Two ways in: ``crawler harvest --retry-failed`` (failed images, all or by error code)
and ``crawler verify`` (stored files whose bytes are not what the manifest says, or
that are missing). Either way a task goes back as if it had never been tried (pending,
no attempts, no result), its line leaves the manifest, and a finished crawl is
finished no more: the next harvest resumes, fetches them, and the crawl ends with
exactly one manifest line per URL again.

Guarantee: all of it happens under the state folder's lock (``broker.state.lock_state``),
so never while a harvester runs, and before a harvester opens the database (the broker
reads its counts once, at start). The manifest is rewritten atomically (a temporary
file in OUT, synced, renamed).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from crawler.broker.board import UNRECORDED
from crawler.broker.state import (
    DATABASE_NAME,
    CrawlMeta,
    CrawlState,
    Transaction,
    lock_state,
    open_database,
    unwritable_is_a_state_error,
)
from crawler.errors import StateError
from crawler.output.manifest import MANIFEST_NAME, ManifestRecords
from crawler.records import STORED, ManifestRecord, error_code
from crawler.storage import file_matches, fsync_path
from crawler.web.robots import DISALLOWED, UNREACHABLE, robots_url

# Failed images that were never fetched: the harvester refused them for robots.txt.
# They go back to wait for a fresh read of it, never straight to the downloaders.
ROBOTS_REFUSALS = frozenset({DISALLOWED, UNREACHABLE})
# A refusal by a robots.txt that was read is a decision, not a failure: it is
# retried only when named (``--only robots_disallowed``, say after --ignore-robots).
RETRIED_ONLY_WHEN_NAMED = frozenset({DISALLOWED})
EXAMPLES_SHOWN = 10
REWRITE_SUFFIX = ".rewrite"

_REQUEUE_SQL = (
    "UPDATE tasks SET state = 'pending', failures = 0, attempts = 0, result = NULL, "
    "owner = NULL, deadline = 0, due = 0, finished_seq = 0, queued_at = ? WHERE url = ?"
)


@dataclass(frozen=True)
class FinalTask:
    """What putting a final task back needs to know of it."""

    url: str
    page: str
    kind: str
    error: str | None


def retry_matches(error: str | None, only: Iterable[str]) -> bool:
    """Whether a failed image with this error is retried: its error starts with one of
    ``only``, or, when none is given, any error but those retried only when named."""
    reasons = tuple(only)
    if reasons:
        return (error or "").startswith(reasons)
    return error_code(error) not in RETRIED_ONLY_WHEN_NAMED


def failed_tasks(db: sqlite3.Connection, only: Iterable[str]) -> list[FinalTask]:
    """The failed image tasks that ``retry_matches``, in the order they were found."""
    reasons = tuple(only)
    rows = db.execute(
        "SELECT url, page, kind, json_extract(result, '$.error') FROM tasks "
        "WHERE state = 'failed' ORDER BY id"
    )
    return [FinalTask(*row) for row in rows if retry_matches(row[3], reasons)]


def final_tasks(db: sqlite3.Connection, urls: Iterable[str]) -> list[FinalTask]:
    """The final tasks of ``urls`` (URLs without one, or not final, are left out)."""
    found = []
    for url in urls:
        row = db.execute(
            "SELECT url, page, kind, json_extract(result, '$.error') FROM tasks "
            "WHERE url = ? AND state IN ('stored', 'failed')",
            (url,),
        ).fetchone()
        if row is not None:
            found.append(FinalTask(*row))
    return found


def requeue_tasks(db: sqlite3.Connection, out: Path, tasks: list[FinalTask]) -> None:
    """Put final ``tasks`` back in the queue as new and remove their manifest lines.

    Refusals for robots.txt wait among the held images for a fresh read of it; every
    other task is pending with no attempts, failures, result, owner or due time. The
    lines of tasks that became final after the last recorded batch go too (a harvester
    that resumes writes those from the database), and the recorded watermark and the
    manifest's size are set to what the harvester's resume check expects.

    Order: the new manifest is written and synced first, the database changed in one
    transaction, then the manifest renamed into place. A crash before the rename
    leaves the old lines of the re-queued tasks in the manifest (a duplicate line
    later, never a lost one); the recorded size is set last, and until then the stale
    one makes a resume read the whole (shorter) manifest, which is safe.
    """
    if not tasks:
        return
    meta = CrawlMeta(db)
    recorded = int(meta.get("recorded_seq") or 0)
    drop = {task.url for task in tasks}
    drop.update(
        url for (url,) in db.execute(f"SELECT url FROM tasks WHERE {UNRECORDED}", (recorded,))
    )
    manifest = out / MANIFEST_NAME
    rewritten = _write_manifest_without(manifest, drop) if manifest.exists() else None
    try:
        with Transaction(db):
            _put_back(db, tasks)
            top = db.execute("SELECT MAX(finished_seq) FROM tasks").fetchone()[0] or 0
            # New results are numbered from the highest remaining one on: the watermark
            # must stay below them, or their lines would count as written.
            meta.set("recorded_seq", min(recorded, top))
            meta.set("finished", False)
    except BaseException:
        if rewritten is not None:
            rewritten.unlink(missing_ok=True)
        raise
    if rewritten is not None:
        with unwritable_is_a_state_error(manifest):
            os.replace(rewritten, manifest)
            fsync_path(out)
        meta.set("manifest_bytes", manifest.stat().st_size)


def _put_back(db: sqlite3.Connection, tasks: list[FinalTask]) -> None:
    held = [task for task in tasks if error_code(task.error) in ROBOTS_REFUSALS]
    held_urls = {task.url for task in held}
    now = time.time()  # queued again now: the wait until stored counts from here
    db.executemany(_REQUEUE_SQL, [(now, task.url) for task in tasks if task.url not in held_urls])
    for task in held:
        robots = robots_url(task.url)
        db.execute("DELETE FROM tasks WHERE url = ?", (task.url,))
        db.execute(
            "INSERT OR IGNORE INTO held_robots (robots, checks, due) VALUES (?, 0, 0)", (robots,)
        )
        db.execute(
            "INSERT OR IGNORE INTO held_images (url, page, kind, robots) VALUES (?, ?, ?, ?)",
            (task.url, task.page, task.kind, robots),
        )


def _write_manifest_without(manifest: Path, urls: set[str]) -> Path:
    """A synced copy of ``manifest`` beside it without the lines of ``urls`` (nor a
    torn last line); lines that do not parse are kept as they are."""
    rewritten = manifest.with_name(manifest.name + REWRITE_SUFFIX)
    with unwritable_is_a_state_error(rewritten):
        try:
            with manifest.open("rb") as source, rewritten.open("wb") as target:
                for line in source:
                    if line.endswith(b"\n") and _line_url(line) not in urls:
                        target.write(line)
                target.flush()
                os.fsync(target.fileno())
        except BaseException:
            rewritten.unlink(missing_ok=True)
            raise
    return rewritten


def _line_url(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("url") if isinstance(record, dict) else None


@contextlib.contextmanager
def locked_state(state_dir: Path, doing: str) -> Iterator[None]:
    """Hold the state folder's lock, or refuse: a harvester is running on it."""
    try:
        lock = lock_state(state_dir)
    except StateError:
        raise StateError(
            f"a harvester is running on the state folder {state_dir}: stop it before {doing}"
        ) from None
    except OSError as exc:
        raise StateError(f"cannot lock the state folder {state_dir}: {exc.strerror}") from None
    try:
        yield
    finally:
        lock.close()


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _existing_state(state_dir: Path) -> None:
    if not (state_dir / DATABASE_NAME).exists():
        raise StateError(
            f"no crawl state in {state_dir}: --retry-failed resumes a crawl that ran "
            "before (give its --out, or --state)"
        )


# -- crawler harvest --retry-failed ----------------------------------------------------


@dataclass(frozen=True)
class RetrySummary:
    """Failed images put back for the harvest, by error code."""

    reasons: collections.Counter[str]
    only: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def line(self) -> str:
        if not self.count:
            which = f" with an error starting {' or '.join(self.only)}" if self.only else ""
            return f"no failed images{which} to retry"
        reasons = ", ".join(f"{code}: {n}" for code, n in self.reasons.most_common())
        return f"retrying {_counted(self.count, 'failed image')} ({reasons})"


def retry_failed(state_dir: Path, out: Path, seeds: list[str], only: Iterable[str]) -> RetrySummary:
    """Put the crawl's failed images (those whose error starts with one of ``only``, or
    all but ``RETRIED_ONLY_WHEN_NAMED``) back in the queue for the harvest about to
    resume it. ``seeds`` (normalized) must be the crawl's."""
    only = tuple(only)
    _existing_state(state_dir)
    with locked_state(state_dir, "retrying failed images"):
        state = CrawlState(state_dir, seeds)
        try:
            tasks = failed_tasks(state.pages_db, only)
            requeue_tasks(state.pages_db, out, tasks)
        finally:
            state.close()
    return RetrySummary(collections.Counter(error_code(task.error) for task in tasks), only)


# -- crawler verify ----------------------------------------------------------------------


@dataclass
class FileCheck:
    """What ``check_stored_files`` found. Bounded: the URLs of bad files, examples and
    per-node counts; missing URLs only when they are to be re-queued."""

    checked: int = 0
    ok: int = 0
    wrong: dict[str, str] = field(default_factory=dict)  # url -> path under OUT
    missing: int = 0
    missing_urls: set[str] = field(default_factory=set)
    missing_by_node: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)
    unreadable_lines: int = 0


def check_stored_files(out: Path, keep_missing: bool = False) -> FileCheck:
    """Hash every file the manifest says is stored under ``out`` against its size and
    SHA-256, streaming the manifest. A path that would leave OUT counts as wrong and is
    never opened."""
    found = FileCheck()
    records = ManifestRecords(out / MANIFEST_NAME)
    for line in records:
        record = ManifestRecord.from_wire(line)
        if record is None or record.outcome != STORED or record.path is None:
            continue
        found.checked += 1
        url, relative = record.url, record.path
        path = _inside(out, relative)
        if path is not None and not path.exists():
            found.missing += 1
            found.missing_by_node[record.node or "unknown"] += 1
            if keep_missing:
                found.missing_urls.add(url)
            _example(found, f"missing: {relative}")
        elif path is not None and _matches(path, record.bytes, record.sha256):
            found.ok += 1
        else:
            found.wrong[url] = relative
            _example(found, f"wrong content: {relative}")
    found.unreadable_lines = records.skipped
    return found


def _matches(path: Path, size: int | None, sha256: str | None) -> bool:
    if size is None or sha256 is None:
        return False
    try:
        return file_matches(path, size, sha256)
    except IsADirectoryError:
        return False
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror or exc}") from None


def _inside(out: Path, relative: str) -> Path | None:
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        return None
    return out.joinpath(*parts)


def _example(found: FileCheck, text: str) -> None:
    if len(found.examples) < EXAMPLES_SHOWN:
        found.examples.append(text)


@dataclass
class Verification:
    """The outcome of ``verify_crawl``, with the lines ``crawler verify`` prints."""

    out: Path
    state_dir: Path
    files: FileCheck
    has_state: bool
    requeued: int = 0
    deleted: int = 0
    seeds: list[str] = field(default_factory=list)
    requeue_missing: bool = False

    @property
    def all_matched(self) -> bool:
        return self.files.ok == self.files.checked

    def lines(self) -> list[str]:
        files = self.files
        lines = [
            f"checked {files.checked} stored images in {self.out}: {files.ok} ok, "
            f"{len(files.wrong)} wrong content, {files.missing} missing"
        ]
        lines += [f"  {example}" for example in files.examples]
        if files.unreadable_lines:
            lines.append(f"skipped {files.unreadable_lines} manifest lines that do not parse")
        if self.deleted:
            lines.append(f"deleted {_counted(self.deleted, 'file')} with the wrong content")
        if files.missing and not self.requeue_missing:
            nodes = ", ".join(
                f"{node if node.isprintable() else repr(node)} ({count})"
                for node, count in files.missing_by_node.most_common(EXAMPLES_SHOWN)
            )
            lines.append(
                f"missing files were stored by {nodes}: copy each node's --out folder "
                f"into {self.out}, or give --requeue-missing to fetch them again"
            )
        bad = len(files.wrong) + (files.missing if self.requeue_missing else 0)
        if bad and not self.has_state:
            lines.append(
                f"no crawl state in {self.state_dir}: nothing was re-queued (give --state)"
            )
        elif self.requeued:
            lines.append(
                f"run the same crawler harvest command to fetch {_counted(self.requeued, 'image')} "
                f"again (crawler harvest {' '.join(self.seeds)} ...)"
            )
        return lines


def verify_crawl(out: Path, state_dir: Path, requeue_missing: bool = False) -> Verification:
    """Check every stored file of the crawl in ``out``; delete those with the wrong
    content and, when the crawl's state is there, put their tasks back in the queue
    (and the missing ones' too with ``requeue_missing``)."""
    if not (out / MANIFEST_NAME).is_file():
        raise StateError(f"no manifest in {out} ({out / MANIFEST_NAME}): give the crawl's --out")
    has_state = (state_dir / DATABASE_NAME).exists()
    with locked_state(state_dir, "verifying") if has_state else contextlib.nullcontext():
        files = check_stored_files(out, keep_missing=requeue_missing and has_state)
        result = Verification(out, state_dir, files, has_state, requeue_missing=requeue_missing)
        if has_state and (files.wrong or files.missing_urls):
            db = open_database(state_dir / DATABASE_NAME)
            try:
                tasks = final_tasks(db, [*files.wrong, *files.missing_urls])
                requeue_tasks(db, out, tasks)
                result.requeued, result.seeds = len(tasks), CrawlMeta(db).get("seeds") or []
            finally:
                db.close()
        result.deleted = _delete_files(out, files.wrong.values())
    return result


def _delete_files(out: Path, relatives: Iterable[str]) -> int:
    """Delete the files at these paths under OUT (each once); returns how many were there.
    Deleted after their tasks went back: a crash in between leaves a wrong file that the
    downloader replaces when it stores the image again."""
    deleted = 0
    for relative in set(relatives):
        path = _inside(out, relative)
        if path is None:
            continue
        with unwritable_is_a_state_error(path):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        deleted += 1
    return deleted
