"""The downloader's committer: verified temporary files into place in batches, durably.

A result says "stored" only of a file that ``commit`` put on disk under its final
name, with the size and SHA-256 the result gives; a batch costs two syncs of the file
system instead of one fsync per image."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.objectstore import ObjectStore
from crawler.storage import (
    StrPath,
    check_temporary,
    commit_file,
    fsync_path,
    sync_filesystem,
)


@dataclass(frozen=True, slots=True)
class Staged:
    """A finished, verified temporary file waiting for ``Committer.commit``, with the
    size and SHA-256 of the body it must hold."""

    key: int  # the caller's name for it (the downloader uses the task id)
    temporary: StrPath
    relative: StrPath
    size: int
    sha256: str


def _check_staged(staged: list[Staged]) -> dict[int, str]:
    """``{key: error}`` for the staged files that do not hold what was downloaded."""
    failed = {}
    for item in staged:
        try:
            check_temporary(item.temporary, item.size, item.sha256)
        except OSError as exc:
            failed[item.key] = _store_error(item, exc)
    return failed


class Committer:
    """Moves verified temporary files into place in batches, durably.

    ``stage`` is called per image; ``take`` then ``commit`` once per batch (the
    downloader does this just before it reports the batch, so a result says "stored"
    only of a file that is on disk under its final name, with the size and SHA-256
    the result gives). A batch costs two syncs of the file system, one before the
    renames (the data) and one after (the names), where one fsync per file was a
    share of the downloader's time (docs/design-notes.md), and one read of its files
    to check them.
    """

    def __init__(self, out: Path, sync: bool = True) -> None:
        self.out = out
        self.sync = sync  # False: rename only, and let the kernel write back in its time
        self._staged: list[Staged] = []

    def stage(
        self, key: int, temporary: StrPath, relative: StrPath, size: int, sha256: str
    ) -> None:
        self._staged.append(Staged(key, temporary, relative, size, sha256))

    def take(self) -> list[Staged]:
        staged, self._staged = self._staged, []
        return staged

    def commit(
        self, staged: Iterable[Staged], blocking: Callable[..., Any] | None = None
    ) -> dict[int, str]:
        """Make ``staged`` durable (unless ``sync`` is off) and rename each into place;
        returns ``{key: error}`` for the files that could not be stored (their
        temporaries are removed).

        ``blocking(function, *args)`` runs the syncs and the checks of the files' content,
        which wait for the disk: the downloader passes its threadpool's, so the event
        loop keeps running. The renames
        stay in the caller's thread: done in the pool too, every one of them handed the
        GIL back and forth with the busy loop (futex calls: docs/design-notes.md).
        """
        staged = list(staged)
        if not staged:
            return {}
        blocking = blocking or _call
        try:
            # Without syncfs (not Linux), each file and then each folder is fsynced.
            sync_each = self.sync and not blocking(sync_filesystem, self.out)
        except OSError as exc:
            return {item.key: _store_error(item, exc) for item in staged}
        failed = blocking(_check_staged, staged)
        folders: set[str] = set()
        for item in staged:
            if item.key in failed:
                continue
            try:
                if sync_each:
                    blocking(fsync_path, item.temporary)
                commit_file(item.temporary, self.out, item.relative, item.size, item.sha256)
                folders.add(os.path.dirname(os.path.join(self.out, item.relative)))
            except OSError as exc:
                failed[item.key] = _store_error(item, exc)
        if not self.sync:
            return failed
        try:
            if not blocking(sync_filesystem, self.out):
                for folder in folders:
                    blocking(fsync_path, folder)
        except OSError as exc:
            return {item.key: _store_error(item, exc) for item in staged}
        return failed


def _call(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def _store_error(item: Staged, exc: OSError) -> str:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(item.temporary)
    return f"store_error: {exc.strerror or exc}"


class StoreCommitter(Committer):
    """Puts verified temporary files into an object store (``objectstore.py``) in
    batches, instead of renaming them into a folder: ``--out s3://...``.

    The temporaries live in a local spool folder (``out``); each is checked against its
    size and SHA-256, read, put under its relative path (the store verifies it too) and
    removed. A put that fails is a ``store_error`` for that key, as a full disk is:
    the node hands the task back and pauses. ``uploads`` puts run at once (greenlets:
    boto3 waits on gevent's sockets).
    """

    def __init__(self, spool: Path, store: ObjectStore, uploads: int = 8) -> None:
        super().__init__(spool, sync=False)
        self.store = store
        self.uploads = uploads

    def commit(
        self, staged: Iterable[Staged], blocking: Callable[..., Any] | None = None
    ) -> dict[int, str]:
        """Put ``staged`` into the store; ``{key: error}`` for those that could not be."""
        import gevent.pool

        staged = list(staged)
        if not staged:
            return {}
        blocking = blocking or _call
        failed = blocking(_check_staged, staged)

        def put(item: Staged) -> tuple[int, str | None]:
            try:
                data = blocking(_read, item.temporary)
                self.store.put(Path(item.relative).as_posix(), data, item.sha256)
            except OSError as exc:
                return item.key, _store_error(item, exc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.temporary)
            return item.key, None

        todo = [item for item in staged if item.key not in failed]
        for key, error in gevent.pool.Pool(self.uploads).imap_unordered(put, todo):
            if error is not None:
                failed[key] = error
        return failed


def _read(path: StrPath) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
