"""Content-addressed image files and atomic, checked writes.

Layout: ``OUT/<host>/<sha256[:2]>/<sha256>.<ext>``. Names come only from the content
hash, the sniffed type and a sanitized host, so nothing a server sends can choose a
path outside ``OUT``. A file appears under its final name only complete (write to a
temporary file in ``OUT/.tmp``, make it durable, rename), so a crash never leaves a
partial image (``download/committer.py`` does this for a whole batch at once).

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
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from crawler.urls import host_dir

TMP_DIR = ".tmp"
StrPath = str | os.PathLike[str]


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


def write_all(write: IO[bytes] | Callable[[memoryview], int], data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to an unbuffered file (or with a raw ``write``
    function, such as ``os.write`` on a descriptor), or raise.

    A raw ``write`` may write less than it was given (a disk that fills up returns a
    short count before it fails with ENOSPC); the rest is written again until all of
    it is on its way, and a write of nothing is a full disk.
    """
    name = getattr(write, "name", "")
    write = getattr(write, "write", write)
    view = memoryview(data)
    while view:
        written = write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
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
    names, a share of the downloader's time worth saving: docs/design-notes.md).
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
    if file_matches(final, size, sha256):
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
