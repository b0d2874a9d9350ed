"""The committer: batches of verified temporaries into place, durably."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from crawler import storage
from crawler.download.committer import Committer, StoreCommitter
from crawler.objectstore import MemoryStore
from crawler.storage import (
    TMP_DIR,
)
from tests.test_storage import CONTENT, SHA, files_under, image_relative_path, write_temporary


@pytest.mark.parametrize(
    ("syncfs", "sync"),
    [(True, True), (False, True), (True, False)],
    ids=["syncfs", "fsync-per-file", "no-sync"],
)
def test_committer_moves_a_batch_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool, sync: bool
):
    if not syncfs:  # a platform without syncfs: each file and folder is fsynced instead
        monkeypatch.setattr(storage, "_SYNCFS", None)
    out = tmp_path / "out"
    committer = Committer(out, sync)
    contents = [CONTENT, b"GIF89a other", CONTENT]  # the third is a copy of the first
    for key, content in enumerate(contents):
        sha = hashlib.sha256(content).hexdigest()
        relative = image_relative_path("http://h.example/x", sha, "bin")
        committer.stage(key, write_temporary(out, content), relative, len(content), sha)
    staged = committer.take()
    assert committer.take() == []  # taken once
    assert all(item.temporary.exists() for item in staged)  # nothing moved before commit

    handed_off = []  # what went to `blocking` (the downloader's threadpool)

    def blocking(function, *args):  # type: ignore[no-untyped-def]
        handed_off.append(function.__name__)
        return function(*args)

    assert committer.commit(staged, blocking) == {}
    assert list((out / TMP_DIR).iterdir()) == []
    stored = {path.read_bytes() for path in files_under(out)}
    assert stored == {CONTENT, b"GIF89a other"}  # one file per distinct content
    # Only the waits for the disk (syncs, the content check) are handed off; the
    # renames stay in the caller.
    if not sync:
        assert handed_off == ["_check_staged"]
    elif syncfs:
        assert handed_off == ["sync_filesystem", "_check_staged", "sync_filesystem"]
    else:
        assert handed_off[0] == "sync_filesystem"
        assert handed_off.count("fsync_path") >= len(contents)  # each file, then folders
        assert set(handed_off) == {"sync_filesystem", "_check_staged", "fsync_path"}
    assert committer.commit([]) == {}


@pytest.mark.skipif(sys.platform != "linux", reason="syncfs is Linux's")
def test_syncfs_is_found_on_linux_and_flushes_a_folder(tmp_path: Path):
    assert storage._SYNCFS is not None
    assert storage.sync_filesystem(tmp_path) is True
    with pytest.raises(OSError):
        storage.sync_filesystem(tmp_path / "missing")


def test_committer_reports_the_files_it_could_not_store(tmp_path: Path):
    out = tmp_path / "out"
    committer = Committer(out)
    blocked = image_relative_path("http://blocked.example/x", SHA, "png")
    out.mkdir()
    (out / blocked.parts[0]).write_bytes(b"a file where the host folder should be")
    committer.stage(1, write_temporary(out), blocked, len(CONTENT), SHA)
    good = image_relative_path("http://fine.example/x", SHA, "png")
    committer.stage(2, write_temporary(out), good, len(CONTENT), SHA)

    failed = committer.commit(committer.take())

    assert list(failed) == [1] and failed[1].startswith("store_error: ")
    assert (out / good).read_bytes() == CONTENT
    assert list((out / TMP_DIR).iterdir()) == []  # the failed one's temporary is gone too


# -- into an object store (--out s3://...) ---------------------------------------------


def test_store_committer_puts_verified_files_and_removes_the_temporaries(tmp_path: Path):
    spool = tmp_path / "spool"
    store = MemoryStore("memory://committer-test")
    committer = StoreCommitter(spool, store)
    contents = [CONTENT, b"GIF89a other"]
    relatives = []
    for key, content in enumerate(contents):
        sha = hashlib.sha256(content).hexdigest()
        relatives.append(image_relative_path("http://h.example/x", sha, "bin"))
        committer.stage(key, write_temporary(spool, content), relatives[-1], len(content), sha)
    # A temporary whose bytes changed after the download is refused, not put.
    bad = write_temporary(spool, CONTENT)
    bad.write_bytes(b"changed on disk")
    committer.stage(7, bad, relatives[0], len(CONTENT), SHA)

    failed = committer.commit(committer.take())

    assert set(failed) == {7} and failed[7].startswith("store_error: ")
    assert store.objects == {str(relatives[0]): CONTENT, str(relatives[1]): b"GIF89a other"}
    assert not list((spool / TMP_DIR).glob("*"))  # every temporary removed


def test_a_store_that_fails_is_a_store_error_for_each_file(tmp_path: Path):
    spool = tmp_path / "spool"
    store = MemoryStore("memory://failing", fail=OSError("s3://b: RequestTimeout: timed out"))
    committer = StoreCommitter(spool, store)
    sha = hashlib.sha256(CONTENT).hexdigest()
    relative = image_relative_path("http://h.example/x", sha, "bin")
    committer.stage(1, write_temporary(spool, CONTENT), relative, len(CONTENT), sha)
    committer.stage(2, write_temporary(spool, CONTENT), relative, len(CONTENT), sha)

    failed = committer.commit(committer.take())

    assert failed == {
        1: "store_error: s3://b: RequestTimeout: timed out",
        2: "store_error: s3://b: RequestTimeout: timed out",
    }
    assert store.objects == {} and not list((spool / TMP_DIR).glob("*"))
