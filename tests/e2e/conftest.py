"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Processes started for one test; every one is killed at the end, whatever happened."""
    running = Cluster(tmp_path)
    yield running
    running.stop_all()
