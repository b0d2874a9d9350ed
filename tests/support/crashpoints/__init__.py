"""Have a test's process killed at a named point of the harvester (``sitecustomize.py``
here does it; the package itself carries no test hooks)."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
POINTS = ("before_manifest", "after_manifest", "after_state")


def crash_at(env: dict[str, str], point: str, times: int = 1) -> dict[str, str]:
    """``env`` for a process to be killed (SIGKILL) the ``times``-th time it passes
    ``point``: this folder first on ``PYTHONPATH``, so Python runs its sitecustomize."""
    if point not in POINTS:
        raise ValueError(f"no crash point {point!r}; there are {', '.join(POINTS)}")
    paths = [str(FOLDER), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    return {
        **env,
        "CRAWLERTEST_CRASH_AT": f"{point}:{times}",
        "PYTHONPATH": os.pathsep.join(paths),
    }
