"""Tests for crawler.output.tailview: the live view's content, and `crawler tail` on a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from crawler.output.progress import STOPPED_NOTE, Summary, format_line, parse_line
from crawler.output.tailview import render
from tests.e2e.cluster import crawler_env

T0 = 1_790_000_000.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_lines(finished: bool) -> list[str]:
    lines = [
        format_line("crawl_started", {"seeds": "http://site.test/"}, T0),
        format_line("node_joined", {"node": "n1"}, T0),
        format_line("node_joined", {"node": "n2"}, T0),
    ]
    for i in range(60):
        node = "n1" if i % 3 else "n2"
        lines.append(format_line("stored", {"url": f"u{i}", "bytes": 50_000, "node": node}, T0 + i))
    lines += [
        format_line("failed", {"url": "x", "error": "http_404", "node": "n1"}, T0 + 60),
        format_line(
            "failed", {"url": "y", "error": "connection_error: reset", "node": "n2"}, T0 + 60
        ),
        format_line("failed", {"url": "z", "error": "http_404", "node": "n2"}, T0 + 60),
        format_line("totals", {"pages": 5, "frontier": 0, "queued": 183, "stored": 60}, T0 + 60),
        format_line(
            "hosts",
            {"busy": "site.test=8/8", "throttled": "cdn.test=paused:2.0s;delay:0.5s;429/503:3"},
            T0 + 60,
        ),
    ]
    if finished:
        lines.append(format_line("crawl_finished", {"stored": 60}, T0 + 61))
    return lines


def rendered(lines: list[str], stopped: bool = False) -> str:
    summary = Summary()
    for line in lines:
        summary.update(parse_line(line))
    console = Console(record=True, width=120, color_system=None)
    console.print(render(summary, "progress.log", stopped))
    return console.export_text()


def test_view_of_a_running_crawl():
    text = rendered(log_lines(finished=False))
    assert "crawl running" in text and "seeds: http://site.test/" in text
    assert "stored 60" in text and "failed 3" in text and "images known 183" in text
    assert "1.0 images/s" in text  # 60 stored over the last 60 s of the log
    # 120 images to go at 1 image/s: the ETA is known once no page is left to fetch.
    assert "ETA 2 min 00 s" in text
    assert "n1" in text and "n2" in text
    assert "http_404" in text and "connection_error" in text
    assert "site.test" in text and "8/8" in text
    assert "cdn.test" in text and "paused:2.0s, delay:0.5s, 429/503:3" in text


def test_view_of_a_finished_crawl_drops_live_only_parts():
    text = rendered(log_lines(finished=True))
    assert "crawl finished" in text and "ETA -" in text
    assert "hosts" not in text


def test_view_of_a_stopped_crawl_drops_live_only_parts():
    text = rendered(log_lines(finished=False), stopped=True)
    assert "crawl stopped" in text and "stored 60" in text and "ETA -" in text
    assert "hosts" not in text


def run_in_terminal(args: list[str], feed: list[str] | None, log: Path) -> tuple[int, str]:
    """Run `crawler ARGS` with stdout on a pseudo-terminal; append ``feed`` lines to the
    log while it runs. Returns the exit code and everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", *args],
        stdout=slave,
        stderr=slave,
        env={**crawler_env(), "COLUMNS": "120", "TERM": "xterm-256color"},
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 30
    pending = list(feed or [])
    while time.monotonic() < deadline:
        if pending:
            with log.open("a") as handle:
                handle.write(pending.pop(0) + "\n")
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None and not pending:
            break
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()  # a tail that does not end fails the test, and does not outlive it
        proc.wait(timeout=10)
        raise AssertionError(f"crawler {' '.join(args)} still running") from None
    finally:
        os.close(master)
    return code, output.decode(errors="replace")


def test_tail_on_a_terminal_draws_the_live_view_of_a_growing_log(tmp_path):
    log = tmp_path / "progress.log"
    lines = log_lines(finished=True)
    log.write_text("\n".join(lines[:10]) + "\n")
    code, output = run_in_terminal(["tail", str(log)], lines[10:], log)
    assert code == 0
    assert "\x1b[" in output, "a terminal gets the redrawn (escape-coded) view"
    screen = ANSI_ESCAPE.sub("", output)
    assert "crawl running" in screen, "the view is drawn while the log grows"
    assert "crawl finished" in screen and "top failure reasons" in screen
    assert "event=stored" not in output, "no raw log lines in the live view"


def test_tail_plain_on_a_terminal_prints_lines(tmp_path):
    log = tmp_path / "progress.log"
    log.write_text("\n".join(log_lines(finished=True)) + "\n")
    code, output = run_in_terminal(["tail", "--plain", str(log)], None, log)
    assert code == 0
    assert "event=stored" in output and "[finished]" in output


def test_tail_on_a_terminal_ends_when_the_crawl_was_stopped(tmp_path):
    log = tmp_path / "progress.log"
    lines = [*log_lines(finished=False), format_line("crawl_stopped", {"stored": 60}, T0 + 61)]
    log.write_text("\n".join(lines[:10]) + "\n")
    code, output = run_in_terminal(["tail", str(log)], lines[10:], log)
    assert code == 0
    screen = ANSI_ESCAPE.sub("", output)
    assert "crawl stopped" in screen
    assert screen.rstrip().splitlines()[-1].strip() == STOPPED_NOTE


def test_tail_on_a_terminal_refuses_a_folder_that_does_not_exist(tmp_path):
    log = tmp_path / "nowhere" / "progress.log"
    code, output = run_in_terminal(["tail", str(log)], None, tmp_path / "unused.log")
    assert code == 2
    assert f"crawler tail: error: cannot follow {log}" in output.replace("\r\n", "")
    assert "Traceback" not in output
