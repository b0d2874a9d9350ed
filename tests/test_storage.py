"""Tests for crawler.storage: the file layout, atomic commits and the manifest."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crawler import storage
from crawler.download.committer import Committer
from crawler.storage import (
    TMP_DIR,
    commit_file,
    image_relative_name,
    open_temporary,
    remove_stale_temporaries,
)


def image_relative_path(url: str, sha256: str, extension: str) -> Path:
    return Path(image_relative_name(url, sha256, extension))


CONTENT = b"\x89PNG\r\n\x1a\n pretend image bytes"
SHA = hashlib.sha256(CONTENT).hexdigest()


def write_temporary(out: Path, content: bytes = CONTENT) -> Path:
    with open_temporary(out) as handle:
        handle.write(content)
    return Path(handle.name)


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


# -- layout --------------------------------------------------------------------------


def test_image_relative_path_layout():
    relative = image_relative_path("http://example.org/a/b.png?x=1", SHA, "png")
    assert relative == Path("example.org") / SHA[:2] / f"{SHA}.png"


def test_image_relative_path_keeps_a_non_default_port():
    relative = image_relative_path("http://127.0.0.1:8000/b.jpg", SHA, "jpg")
    assert relative.parts == ("127.0.0.1_8000", SHA[:2], f"{SHA}.jpg")


def test_image_relative_path_ignores_the_url_path_and_name():
    relative = image_relative_path("http://example.org/../../etc/passwd.png", SHA, "png")
    assert relative == Path("example.org") / SHA[:2] / f"{SHA}.png"


# -- temporary files and commits -----------------------------------------------------


def test_open_temporary_creates_a_file_in_out_tmp(tmp_path: Path):
    out = tmp_path / "out"
    with open_temporary(out) as handle:
        handle.write(b"partial")
        path = Path(handle.name)
    assert path.parent == out / TMP_DIR
    assert path.read_bytes() == b"partial"


def test_open_temporary_gives_distinct_files(tmp_path: Path):
    first = write_temporary(tmp_path, b"one")
    second = write_temporary(tmp_path, b"two")
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")


def test_commit_file_moves_the_temporary_into_place(tmp_path: Path):
    temporary = write_temporary(tmp_path)
    relative = image_relative_path("http://example.org/a.png", SHA, "png")
    assert commit_file(temporary, tmp_path, relative, len(CONTENT), SHA) is True
    assert (tmp_path / relative).read_bytes() == CONTENT
    assert not temporary.exists()
    assert list((tmp_path / TMP_DIR).iterdir()) == []


def test_commit_file_keeps_the_existing_file_and_drops_the_copy(tmp_path: Path):
    relative = image_relative_path("http://example.org/a.png", SHA, "png")
    assert commit_file(write_temporary(tmp_path), tmp_path, relative, len(CONTENT), SHA) is True
    before = (tmp_path / relative).stat()
    duplicate = write_temporary(tmp_path, b"same hash, pretend")
    assert commit_file(duplicate, tmp_path, relative, len(CONTENT), SHA) is False
    assert not duplicate.exists()
    assert (tmp_path / relative).read_bytes() == CONTENT
    assert (tmp_path / relative).stat().st_ino == before.st_ino
    assert list((tmp_path / TMP_DIR).iterdir()) == []


def test_commit_file_is_a_rename_not_a_copy(tmp_path: Path):
    temporary = write_temporary(tmp_path)
    inode = temporary.stat().st_ino
    relative = image_relative_path("http://example.org/a.png", SHA, "png")
    commit_file(temporary, tmp_path, relative, len(CONTENT), SHA)
    assert (tmp_path / relative).stat().st_ino == inode


HOSTILE_URLS = [
    "http://../x.png",
    "http://../../../../tmp/x.png",
    "http://%2e%2e/x.png",
    "http://a%2F..%2F..%2Fescape/x.png",
    "http://a\\..\\..\\escape/x.png",
    "http://./x.png",
    "http://..:8000/x.png",
    "file:///etc/passwd",
    "",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_files_land_only_under_out(tmp_path: Path, url: str):
    out = tmp_path / "deep" / "out"
    relative = image_relative_path(url, SHA, "png")
    assert commit_file(write_temporary(out), out, relative, len(CONTENT), SHA) is True
    stored = files_under(tmp_path)
    assert stored == {out / relative}
    assert (out / relative).resolve().is_relative_to(out.resolve())
    assert (out / relative).parent.parent.parent == out


# -- manifest ------------------------------------------------------------------------


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path):
    import subprocess

    out = tmp_path / "out"
    code = (
        "import sys; from pathlib import Path; from crawler.storage import open_temporary;"
        "h = open_temporary(Path(sys.argv[1])); h.write(b'partial'); print(h.name)"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True
    ).stdout.strip()
    with open_temporary(out) as mine:
        mine.write(b"still being written")
    foreign = out / TMP_DIR / "part-otherhost-1-abc"
    foreign.write_bytes(b"another machine's file")

    assert remove_stale_temporaries(out) == 1
    assert not Path(dead).exists()
    assert Path(mine.name).exists() and foreign.exists()


# -- a full disk: every write checked, nothing half-written, nothing trusted blindly ----

# Runs in a child process whose file size limit stands in for a full disk: with SIGXFSZ
# ignored, a write past the limit is short, then fails with EFBIG, as on a full disk.
LIMITED_CHILD = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
folder = Path(sys.argv[1])
{body}
"""


def run_limited(folder: Path, limit: int, body: str) -> subprocess.CompletedProcess:
    script = LIMITED_CHILD.format(body=textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-c", script, str(folder), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_write_all_raises_when_the_disk_fills_instead_of_writing_short(tmp_path: Path):
    child = run_limited(
        tmp_path,
        10_000,
        """
        from crawler.storage import open_temporary, write_all
        handle = open_temporary(folder)
        try:
            write_all(handle, b"x" * 25_000)
        except OSError as exc:
            print("raised", exc.errno, Path(handle.name).stat().st_size)
        else:
            print("wrote all")
        """,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split()[0] == "raised"
    assert int(child.stdout.split()[2]) == 10_000  # the disk took what it could


def test_write_all_writes_again_after_a_short_write():
    class ShortWrites(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:  # type: ignore[no-untyped-def]
            taken = bytes(chunk[:7])  # never more than 7 bytes at a time
            self.data += taken
            return len(taken)

    target = ShortWrites()
    storage.write_all(target, CONTENT)  # type: ignore[arg-type]
    assert bytes(target.data) == CONTENT


def test_a_committed_file_is_checked_against_the_download(tmp_path: Path):
    out = tmp_path / "out"
    committer = Committer(out)
    relative = image_relative_path("http://h.example/x", SHA, "png")
    short = write_temporary(out, CONTENT[:-4])  # as a silently short write leaves it
    committer.stage(1, short, relative, len(CONTENT), SHA)
    other = write_temporary(out, CONTENT[:-1] + b"?")  # same size, other bytes
    committer.stage(2, other, relative, len(CONTENT), SHA)

    failed = committer.commit(committer.take())

    assert sorted(failed) == [1, 2]
    assert all(error.startswith("store_error: ") for error in failed.values())
    assert not (out / relative).exists()  # never under the name of content it lacks
    assert list((out / TMP_DIR).iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "other bytes"])
def test_a_file_under_the_final_name_with_other_content_is_replaced(tmp_path: Path, damage: str):
    relative = image_relative_path("http://h.example/x", SHA, "png")
    final = tmp_path / relative
    final.parent.mkdir(parents=True)
    final.write_bytes(CONTENT[:9] if damage == "truncated" else b"?" * len(CONTENT))

    assert commit_file(write_temporary(tmp_path), tmp_path, relative, len(CONTENT), SHA) is True
    assert final.read_bytes() == CONTENT
    assert list((tmp_path / TMP_DIR).iterdir()) == []


def test_file_matches_compares_size_and_hash(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    assert storage.file_matches(path, len(CONTENT), SHA)
    assert not storage.file_matches(path, len(CONTENT) + 1, SHA)
    assert not storage.file_matches(path, len(CONTENT), "0" * 64)
    assert not storage.file_matches(tmp_path / "missing", len(CONTENT), SHA)
