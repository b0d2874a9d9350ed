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
from typing import Any

SHARED_TERMINAL = "CRAWLER_SHARED_TERMINAL"  # set for the children of a multi-process node


def default_node_id() -> str:
    return os.environ.get("CRAWLER_NODE_ID") or f"{socket.gethostname()}-{os.getpid()}"


def run_node_processes(argv: list[str], count: int, node_base: str) -> int:
    """Run ``count`` single-process nodes as children and wait for all of them.

    Children get their own session (so a terminal's Ctrl-C reaches them once, through
    us) and ids ``<node_base>-<i>``. Returns the first non-zero exit code, else 0.
    """
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "crawler", *argv, "--processes", "1"],
            env={**os.environ, "CRAWLER_NODE_ID": f"{node_base}-{index}", SHARED_TERMINAL: "1"},
            start_new_session=True,
        )
        for index in range(count)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code != 0), 0)
