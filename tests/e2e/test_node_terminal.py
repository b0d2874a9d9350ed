"""A downloader node shows a progress line on a terminal and stays quiet on a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NODE_ARGS = ("--processes", "1", "--concurrency", "2", "--allow-private")
PROGRESS = re.compile(r"node term-node: stored \d+, failed \d+, in flight \d+, [\d.]+ images/s")


def test_progress_line_on_a_terminal_only(cluster, tmp_path):
    # The line is redrawn once a second, so the work must last a few seconds: 60 images at
    # 0.2 s each over two nodes of concurrency 2 take about 3 s (6 s for one node alone).
    cluster.serve_site(pages=4, images=60, seed=4, image_delay=0.2)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    cluster.downloader("pipe-node", out, concurrency=2)  # stderr goes to a file
    master, slave = pty.openpty()
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawler",
            "download",
            "--connect",
            cluster.listen,
            *NODE_ARGS,
            "--out",
            str(out),
        ],
        env={**cluster.env, "CRAWLER_NODE_ID": "term-node"},
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            elif node.poll() is not None:
                break
        assert node.wait(timeout=30) == 0
    finally:
        node.kill()
        os.close(master)
    assert cluster.wait_all(["harvester", "pipe-node"]) == {"harvester": 0, "pipe-node": 0}

    screen = output.decode(errors="replace")
    assert "\r\x1b[K" in screen, "the line is redrawn in place"
    lines = ANSI_ESCAPE.sub("", screen).replace("\r", "\n").splitlines()
    progress = [line for line in lines if PROGRESS.search(line)]
    assert len(progress) >= 2, screen[-2000:]
    assert "finished: stored" in screen
    piped = (cluster.logs / "pipe-node.err").read_text()
    assert "in flight" not in piped and "\x1b[" not in piped, "quiet on a pipe"
