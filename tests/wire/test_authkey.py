"""Tests for crawler.wire.authkey: where the shared secret comes from, and how it is protected."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from pathlib import Path

import pytest

from crawler.errors import AuthKeyError, CrawlerError
from crawler.wire import authkey
from crawler.wire.authkey import ENV_NAME, MIN_LENGTH, load_authkey, write_new_key

KEY = "k3y-f0r-th3-t3sts-0nly-9x7q"


def key_file(tmp_path: Path, content: str, mode: int) -> Path:
    path = tmp_path / "authkey"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def test_key_from_environment():
    assert load_authkey(None, {ENV_NAME: KEY}) == KEY.encode()


def test_environment_key_is_stripped():
    assert load_authkey("", {ENV_NAME: f"  {KEY}\n"}) == KEY.encode()


def test_key_file_with_mode_0600(tmp_path: Path):
    path = key_file(tmp_path, KEY + "\n", 0o600)
    assert load_authkey(str(path), {}) == KEY.encode()


def test_key_file_wins_over_environment(tmp_path: Path):
    path = key_file(tmp_path, KEY, 0o600)
    assert load_authkey(str(path), {ENV_NAME: "another-key-from-the-environment"}) == KEY.encode()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_is_refused_without_showing_the_key(tmp_path: Path, mode: int):
    path = key_file(tmp_path, KEY, mode)
    with pytest.raises(AuthKeyError) as caught:
        load_authkey(str(path), {})
    message = str(caught.value)
    assert KEY not in message
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message


def test_missing_key_file(tmp_path: Path):
    with pytest.raises(AuthKeyError, match="not found"):
        load_authkey(str(tmp_path / "absent"), {ENV_NAME: KEY})


@pytest.mark.parametrize("short", ["abc123", "s" * (MIN_LENGTH - 1), "   padded   ", "   "])
def test_short_environment_key_is_refused(short: str):
    with pytest.raises(AuthKeyError) as caught:
        load_authkey(None, {ENV_NAME: short})
    message = str(caught.value)
    assert "too short" in message
    assert ENV_NAME in message
    assert short.strip() == "" or short.strip() not in message


def test_short_key_file_is_refused_without_showing_the_key(tmp_path: Path):
    path = key_file(tmp_path, "tiny-secret\n", 0o600)
    with pytest.raises(AuthKeyError) as caught:
        load_authkey(str(path), {})
    assert "too short" in str(caught.value)
    assert "tiny-secret" not in str(caught.value)


def test_key_of_exactly_the_minimum_length_is_accepted():
    assert load_authkey(None, {ENV_NAME: "k" * MIN_LENGTH}) == b"k" * MIN_LENGTH


@pytest.mark.parametrize("environ", [{}, {ENV_NAME: ""}, {"OTHER": KEY}])
def test_no_key_at_all_mentions_the_variable(environ: dict[str, str]):
    with pytest.raises(AuthKeyError, match=ENV_NAME):
        load_authkey(None, environ)


def test_authkey_errors_are_crawler_errors():
    assert issubclass(AuthKeyError, CrawlerError)


def test_write_new_key_creates_a_private_random_key(tmp_path: Path):
    path = tmp_path / "authkey"
    write_new_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_authkey(str(path), {})
    assert len(key) >= MIN_LENGTH


def test_write_new_key_makes_a_different_key_each_time(tmp_path: Path):
    write_new_key(tmp_path / "one")
    write_new_key(tmp_path / "two")
    assert (tmp_path / "one").read_bytes() != (tmp_path / "two").read_bytes()


def test_write_new_key_refuses_to_overwrite(tmp_path: Path):
    path = key_file(tmp_path, KEY, 0o600)
    with pytest.raises(AuthKeyError, match="already exists"):
        write_new_key(path)
    assert path.read_text(encoding="utf-8") == KEY


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder that refuses new files even to root: mode 0500, else (root) /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    for candidate in (folder, Path("/sys")):
        probe = candidate / ".crawler-write-probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            return candidate
        probe.unlink()
    pytest.skip("no folder here refuses writes")


def unwritable_key_paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {
        "missing folder": tmp_path / "absent" / "crawler.key",
        "parent is a file": a_file / "crawler.key",
        "read-only folder": unwritable_folder(tmp_path) / "crawler.key",
    }


@pytest.mark.parametrize("case", ["missing folder", "parent is a file", "read-only folder"])
def test_write_new_key_where_it_cannot_is_an_authkey_error(tmp_path: Path, case: str):
    path = unwritable_key_paths(tmp_path)[case]
    with pytest.raises(AuthKeyError, match=f"cannot write a key to {re.escape(str(path))}: "):
        write_new_key(path)
    assert not path.exists()


def test_write_new_key_names_the_missing_folder(tmp_path: Path):
    with pytest.raises(AuthKeyError, match="absent is not an existing folder"):
        write_new_key(tmp_path / "absent" / "crawler.key")


def test_a_failed_write_leaves_no_half_written_key(tmp_path: Path, monkeypatch):
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd: int, mode: str) -> FullDisk:
        os.close(fd)
        return FullDisk()

    monkeypatch.setattr(authkey.os, "fdopen", fdopen)
    path = tmp_path / "crawler.key"
    with pytest.raises(AuthKeyError, match="No space left on device"):
        write_new_key(path)
    assert not path.exists()
