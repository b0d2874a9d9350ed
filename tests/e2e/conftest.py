"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster

CHROMIUM_INSTALL_HINT = (
    "chromium is not installed: apt-get install -y --no-install-recommends chromium "
    "(scripts/test.sh and scripts/browser_check.sh install it)"
)
FIND_CHROMIUM_FOR = 15.0  # Chromium may be missing for a moment while a run reinstalls it


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Processes started for one test; every one is killed at the end, whatever happened."""
    running = Cluster(tmp_path)
    yield running
    running.stop_all()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's path. The browser tests fail without it, never skip: a skipped browser
    check would look like a passing one."""
    deadline = time.monotonic() + FIND_CHROMIUM_FOR
    while (found := shutil.which("chromium")) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if found is None:
        pytest.fail(CHROMIUM_INSTALL_HINT)
    return found


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_tmpfs(size)``: a tmpfs of that size (``"300k"``) mounted in the test's
    folder, to stand for a disk that fills up; unmounted at the end."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"tmpfs-{len(mounts)}"
        folder.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True
        )
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)
