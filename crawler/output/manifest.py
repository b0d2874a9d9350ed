"""The manifest (``OUT/manifest.jsonl``, one JSON record per image) and the
all-or-nothing line files it and the progress log are written with.

Guarantee: a write is whole lines or nothing, and a torn last line left by a crash
is repaired before the file is appended to again."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.records import record_line
from crawler.storage import write_all

MANIFEST_NAME = "manifest.jsonl"


class LineFile:
    """An append-only text file of lines, each written at once (so that readers such
    as ``tail`` see it), or all together at the end of a ``batch()``.

    Guarantee: a write is whole lines or nothing. Lines go out with one ``os.write``
    loop on an ``O_APPEND`` descriptor; if the disk fills up part way, the file is cut
    back to where the write began and the error raised, so no line is half there
    and none can be written twice by a later retry of a buffer.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending: list[str] = []
        self._holding = 0

    def write_line(self, text: str) -> None:
        self._pending.append(text)
        if not self._holding:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines, all or none (see the class)."""
        if not self._pending:
            return
        data = ("\n".join(self._pending) + "\n").encode("utf-8")
        self._pending = []
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            write_all(functools.partial(os.write, self._fd), data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def size(self) -> int:
        """Bytes in the file (every line written so far)."""
        return os.fstat(self._fd).st_size

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Lines written inside are written together when the outermost batch ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self.flush()

    def close(self) -> None:
        """Write what is pending and close; the descriptor is closed even if that fails."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


class Manifest:
    """Append-only JSON Lines file, one object per image URL, flushed per record or
    once per ``batch()``."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / MANIFEST_NAME
        self.repaired = repair_torn_line(self.path)
        self._file = LineFile(self.path)

    def recent_urls(self, tail_bytes: int = 4 * 1024 * 1024) -> set[str]:
        """URLs of the records in the last ``tail_bytes`` of the file: where a line
        written just before a crash would be."""
        with self.path.open("rb") as handle:
            start = max(handle.seek(0, os.SEEK_END) - tail_bytes, 0)
            handle.seek(start)
            lines = handle.read().split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first line of the tail may be a fragment
        return {json.loads(line)["url"] for line in lines if line.strip()}

    def urls_after(self, offset: int) -> set[str]:
        """URLs of the records that start at or after byte ``offset`` (the whole file
        if it is shorter than that: it is not the file the offset was taken of)."""
        with self.path.open("rb") as handle:
            if handle.seek(0, os.SEEK_END) >= offset:
                handle.seek(offset)
            else:
                handle.seek(0)
            lines = handle.read().split(b"\n")
        return {json.loads(line)["url"] for line in lines if line.strip()}

    def size(self) -> int:
        """Bytes written so far (pending lines of a batch not included)."""
        return self._file.size()

    def write(self, record: dict[str, Any]) -> None:
        self._file.write_line(record_line(record))

    def write_line(self, line: str) -> None:
        """A record already encoded by ``record_line``."""
        self._file.write_line(line)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Records written inside are flushed together when the outermost batch ends."""
        return self._file.batch()

    def close(self) -> None:
        self._file.close()


def repair_torn_line(path: Path) -> bool:
    """Cut a last line that a crash left half-written; True if there was one."""
    if not path.exists():
        return False
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(max(size - 1, 0))
        if handle.read(1) == b"\n":
            return False
        keep = size
        step = 64 * 1024
        while keep > 0:
            start = max(keep - step, 0)
            handle.seek(start)
            newline = handle.read(keep - start).rfind(b"\n")
            if newline != -1:
                keep = start + newline + 1
                break
            keep = start
        handle.truncate(keep)
        os.fsync(handle.fileno())
    return True


@dataclass
class ManifestRecords:
    """The records of a manifest, read line by line.

    A line that does not parse (the torn last line a crash leaves, or a damaged one) is
    skipped and counted in ``skipped`` rather than stopping the whole read.
    """

    path: Path
    skipped: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    self.skipped += 1
                    continue
                if isinstance(record, dict):
                    yield record
                else:
                    self.skipped += 1


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a manifest (a torn last line is skipped; any other bad
    line raises, which is what the tests want: ``ManifestRecords`` is the tolerant
    streaming reader)."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                records.append(json.loads(line))
    return records
