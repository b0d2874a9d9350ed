"""A downloader node of several processes: its children and their ids.

Kept apart from ``node.py`` so that the parent of a multi-process node only
starts and waits: it never imports gevent, requests or Pillow, nor monkey-patches,
which costs every process CPU time at its start (docs/design-notes.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.metrics.prometheus import ProcessGroupMetrics

SHARED_TERMINAL = "CRAWLER_SHARED_TERMINAL"  # set for the children of a multi-process node


def default_node_id() -> str:
    return os.environ.get("CRAWLER_NODE_ID") or f"{socket.gethostname()}-{os.getpid()}"


def say_metrics(node: str, where: str) -> None:
    if where:
        print(f"node {node}: metrics on http://{where}/metrics", file=sys.stderr, flush=True)


def run_node_processes(
    argv: list[str],
    count: int,
    node_base: str,
    metrics: ProcessGroupMetrics | None = None,
    linger: float = 0.0,
) -> int:
    """Run ``count`` single-process nodes as children and wait for all of them.

    Children get their own session (so a terminal's Ctrl-C reaches them once, through
    us) and ids ``<node_base>-<i>``. Returns the first non-zero exit code, else 0.
    With ``metrics``, the children write their figures for it and it serves their
    sum; once all have ended, it waits for a scrape of the final figures (``linger``
    seconds at most).
    """
    extra = metrics.child_environment() if metrics is not None else {}
    if metrics is not None:
        say_metrics(node_base, metrics.where)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "crawler", *argv, "--processes", "1"],
            env={
                **os.environ,
                **extra,
                "CRAWLER_NODE_ID": f"{node_base}-{index}",
                SHARED_TERMINAL: "1",
            },
            start_new_session=True,
        )
        for index in range(count)
    ]

    stopping = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if metrics is None:
        codes = [child.wait() for child in children]
    else:
        codes = _wait_marking_ends(children, metrics)
    code = next((code for code in codes if code != 0), 0)
    if metrics is not None and code == 0:
        metrics.linger(linger, lambda: bool(stopping))
    return code


def _wait_marking_ends(children: list[subprocess.Popen], metrics: ProcessGroupMetrics) -> list[int]:
    """Wait for every child, telling ``metrics`` of each end as it comes (so that a
    child's gauges leave the sums when it ends, not when the last one does)."""
    running = list(children)
    while running:
        for child in [child for child in running if child.poll() is not None]:
            metrics.process_ended(child.pid)
            running.remove(child)
        if running:
            time.sleep(0.2)
    return [child.returncode for child in children]
