"""Content-addressed image files, atomic writes, and the manifest.

Layout: ``OUT/<host>/<sha256[:2]>/<sha256>.<ext>``. Names come only from the content
hash, the sniffed type and a sanitized host, so nothing a server sends can choose a
path outside ``OUT``. A file appears under its final name only complete (write to a
temporary file in ``OUT/.tmp``, make it durable, rename), so a crash never leaves a
partial image. ``Committer`` makes a whole batch durable with two file-system syncs
instead of one fsync per image.

A file takes its final name only after its size and SHA-256 were checked against what
was downloaded (every write is checked: a full disk makes a raw ``write`` short
without raising), and a file already under that name is trusted only if it matches
too: a stored file never lies about its content.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import itertools
import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crawler.urls import host_dir

TMP_DIR = ".tmp"
MANIFEST_NAME = "manifest.jsonl"
StrPath = str | os.PathLike[str]
# Built once: json.dumps with any non-default option builds a new encoder per call.
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def record_line(record: dict[str, Any]) -> str:
    """A manifest record as its line (without the newline): keys sorted, UTF-8 as is."""
    return _RECORD_ENCODER.encode(record)


def image_relative_name(url: str, sha256: str, extension: str) -> str:
    """Where an image with this content, found at this URL, lives relative to OUT
    (``/``-separated: the downloader's hot path stays with strings)."""
    return f"{host_dir(url)}/{sha256[:2]}/{sha256}.{extension}"


@functools.cache
def _owner_prefix(pid: int) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
    return f"part-{host}-{pid}-"


_temporary_names = itertools.count()


class StoreError(OSError):
    """A stored copy does not match what was downloaded (a fault of our side)."""


def write_all(handle: IO[bytes], data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to an unbuffered file, or raise.

    A raw ``write`` may write less than it was given (a disk that fills up returns a
    short count before it fails with ENOSPC); the rest is written again until all of
    it is on its way, and a write of nothing is a full disk.
    """
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(handle, "name", ""))
        view = view[written:]


def file_matches(path: StrPath, size: int, sha256: str) -> bool:
    """Whether the file at ``path`` has exactly ``size`` bytes with this SHA-256.

    The size is compared first (one ``stat``), so a short file costs no read.
    """
    try:
        if os.stat(path).st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == sha256


def open_temporary(out: Path) -> IO[bytes]:
    """A new, unbuffered temporary file on the same file system as OUT (so rename is
    atomic).

    Its name carries this host and process id, so that ``remove_stale_temporaries``
    can tell the leftovers of a killed process from files still being written; a
    counter makes it unique within the process (cheaper than ``tempfile``'s random
    names, which took 5% of the downloader's time).
    """
    tmp = os.path.join(out, TMP_DIR)
    prefix = _owner_prefix(os.getpid())
    for _attempt in range(100):
        path = os.path.join(tmp, f"{prefix}{next(_temporary_names)}")
        try:
            return open(path, "xb", buffering=0)
        except FileNotFoundError:
            os.makedirs(tmp, exist_ok=True)
        except FileExistsError:
            continue  # left by an earlier process with our pid, or by another host's
    raise FileExistsError(f"no free temporary name in {tmp}")


PROBE_BYTES = 256 * 1024  # a probe of storage writes as much as a typical image


def probe_storage(out: Path, size: int = PROBE_BYTES) -> None:
    """Raise ``OSError`` unless a file of ``size`` bytes can be written, synced and
    removed in OUT's temporary folder: what storing one image needs."""
    handle = open_temporary(out)
    try:
        write_all(handle, bytes(size))
        os.fsync(handle.fileno())
    finally:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)


def remove_stale_temporaries(out: Path) -> int:
    """Delete partial files left in OUT/.tmp by dead processes of this host.

    Files of live processes and of other hosts (a shared folder) are left alone.
    Returns how many were removed.
    """
    removed = 0
    host_prefix = _owner_prefix(0).removesuffix("0-")
    for path in (out / TMP_DIR).glob(host_prefix + "*"):
        pid_text = path.name[len(host_prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def check_temporary(temporary: StrPath, size: int, sha256: str) -> None:
    """Raise ``StoreError`` unless the temporary file holds exactly what was downloaded."""
    if not file_matches(temporary, size, sha256):
        raise StoreError(
            errno.EIO, "the stored copy does not match the download (short write?)", temporary
        )


def commit_file(
    temporary: StrPath, out: StrPath, relative: StrPath, size: int, sha256: str
) -> bool:
    """Move a finished, checked temporary file to ``OUT/relative``; True if it was new.

    The caller checked the temporary (``check_temporary``) and made it durable if it
    needs to (``Committer`` does both). A file already under the final name is kept,
    and the copy dropped, only if it holds the same bytes (one file per distinct
    content); one that does not (a torn or corrupt file from an older version, a
    damaged disk) is replaced.
    """
    final = os.path.join(out, relative)
    if os.path.exists(final) and file_matches(final, size, sha256):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        return False
    try:
        os.replace(temporary, final)
    except FileNotFoundError:
        if not os.path.exists(temporary):
            raise
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(temporary, final)
    return True


def _load_syncfs() -> Any:
    """libc's ``syncfs`` (Linux), or None where there is none.

    Looked up among the symbols already loaded into the process (``CDLL(None)``, where
    libc always is): ``ctypes.util.find_library`` would run ``ldconfig -p`` in a
    subprocess at every start of every process."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    return syncfs


_SYNCFS = _load_syncfs()


def sync_filesystem(folder: Path) -> bool:
    """Flush every written file and metadata change on the file system of ``folder``;
    False if this platform cannot (the caller then fsyncs file by file)."""
    if _SYNCFS is None:
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(folder))
    finally:
        os.close(fd)
    return True


def fsync_path(path: StrPath) -> None:
    """fsync a file or folder by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    renames (the data) and one after (the names), where one fsync per file cost
    about 8% of the downloader's time, and one read of its files to check them.
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
        GIL back and forth with the busy loop (six futex calls per image).
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
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
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
