"""Content-addressed image files, atomic writes, and the manifest.

Layout: ``OUT/<host>/<sha256[:2]>/<sha256>.<ext>``. Names come only from the content
hash, the sniffed type and a sanitized host, so nothing a server sends can choose a
path outside ``OUT``. A file appears under its final name only complete (write to a
temporary file in ``OUT/.tmp``, fsync, rename), so a crash never leaves a partial image.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crawler.urls import host_dir

TMP_DIR = ".tmp"
MANIFEST_NAME = "manifest.jsonl"


def image_relative_path(url: str, sha256: str, extension: str) -> Path:
    """Where an image with this content, found at this URL, lives relative to OUT."""
    return Path(host_dir(url)) / sha256[:2] / f"{sha256}.{extension}"


def _owner_prefix(pid: int) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
    return f"part-{host}-{pid}-"


def open_temporary(out: Path) -> IO[bytes]:
    """A new temporary file on the same file system as OUT (so rename is atomic).

    Its name carries this host and process id, so that ``remove_stale_temporaries``
    can tell the leftovers of a killed process from files still being written.
    """
    tmp = out / TMP_DIR
    tmp.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=tmp, prefix=_owner_prefix(os.getpid()), delete=False)


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


def commit_file(temporary: Path, out: Path, relative: Path) -> bool:
    """Move a finished temporary file to ``OUT/relative``; True if it was new.

    The file was flushed and fsynced by the writer. When a file with the same
    content hash is already there, the temporary copy is dropped instead: one file
    per distinct content.
    """
    final = out / relative
    if final.exists():
        temporary.unlink(missing_ok=True)
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, final)
    return True


class Manifest:
    """Append-only JSON Lines file, one object per image URL, flushed per record."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / MANIFEST_NAME
        self.repaired = repair_torn_line(self.path)
        self._handle = self.path.open("a", encoding="utf-8")

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

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


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
