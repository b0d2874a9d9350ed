"""The live terminal view of ``crawler tail``: one screen redrawn as the log grows.

``render`` is a pure function of a ``Summary`` (tested by rendering to a recording
console); ``watch`` follows the log and redraws with rich's ``Live``. On a pipe or
with ``--plain``, ``progress.tail_log`` prints lines instead.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crawler.output.progress import (
    STOPPED_NOTE,
    CrawlPhase,
    Summary,
    check_log_path,
    follow,
    parse_line,
)

RATE_WINDOW = 60.0  # seconds of log behind "images/s" and "MB/s"
TOP_FAILURES = 5
REDRAW_EVERY = 0.25


def render(summary: Summary, log: str = "", stopped: bool = False) -> Group:
    """Totals, rates and ETA; nodes; top failure reasons; per-host state (while running)."""
    state = "[bold yellow]running[/]"
    if summary.finished:
        state = "[bold green]finished[/]"
    elif stopped:
        state = "[bold red]stopped[/]"
    running = not (summary.finished or stopped)
    eta = summary.eta_seconds(RATE_WINDOW) if running else None
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"crawl {state}",
        f"pages [bold]{summary.pages}[/]",
        f"images known [bold]{summary.known or summary.queued}[/]",
        f"stored [bold green]{summary.stored}[/]",
        f"failed [bold red]{summary.failed}[/]",
    )
    head.add_row(
        f"{summary.images_per_second(RATE_WINDOW):.1f} images/s",
        f"{summary.bytes_per_second(RATE_WINDOW) / 1e6:.2f} MB/s",
        f"{summary.bytes / 1e6:.1f} MB stored",
        "ETA " + (_duration(eta) if eta is not None else "-"),
        f"pages to go {summary.frontier if summary.frontier is not None else '-'}",
    )
    parts: list = [Text(f"{log}  seeds: {summary.seeds}" if summary.seeds else log), head]
    if summary.nodes:
        nodes = Table(title="nodes", title_justify="left", expand=False)
        for column in ("node", "state", "stored", "failed", "images/s", "last seen"):
            nodes.add_column(column, justify="right" if column != "node" else "left")
        for name, stats in sorted(summary.nodes.items()):
            seen = (
                f"{summary.last_ts - stats.last_ts:.0f} s ago"
                if summary.last_ts is not None and stats.last_ts is not None
                else "-"
            )
            rate = summary.images_per_second(RATE_WINDOW, stats.recent)
            nodes.add_row(
                name, stats.state, str(stats.stored), str(stats.failed), f"{rate:.1f}", seen
            )
        parts.append(nodes)
    if summary.failures:
        failures = Table(title="top failure reasons", title_justify="left")
        failures.add_column("reason")
        failures.add_column("count", justify="right")
        for reason, count in summary.failures.most_common(TOP_FAILURES):
            failures.add_row(reason, str(count))
        parts.append(failures)
    if running and (summary.busy_hosts or summary.throttled_hosts):
        hosts = Table(title="hosts", title_justify="left")
        hosts.add_column("host")
        hosts.add_column("in flight / limit", justify="right")
        hosts.add_column("throttling")
        throttled = _pairs(summary.throttled_hosts)
        for host, busy in _pairs(summary.busy_hosts).items():
            hosts.add_row(host, busy, throttled.pop(host, "").replace(";", ", "))
        for host, note in throttled.items():
            hosts.add_row(host, "0", note.replace(";", ", "))
        parts.append(hosts)
    return Group(*parts)


def _pairs(text: str) -> dict[str, str]:
    """``"a=1/8,b:81=2/8"`` -> ``{"a": "1/8", "b:81": "2/8"}`` (hosts hold no "=")."""
    pairs = {}
    for item in filter(None, text.split(",")):
        host, _, value = item.partition("=")
        pairs[host] = value
    return pairs


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def watch(path: Path, console: Console | None = None) -> int:
    """Follow the log with a live view until the crawl is over (or Ctrl-C).

    Over as ``progress.tail_log`` sees it: the whole log read, its latest lifecycle
    event ``crawl_finished`` or ``crawl_stopped`` (then a line says how to resume). A
    missing log is waited for, and the view says so; a missing folder raises
    ``ConfigError``.
    """
    check_log_path(path)
    console = console or Console()
    summary, phase = Summary(), CrawlPhase()
    last_drawn = 0.0

    def view() -> Group:
        waiting = "" if path.exists() else "  (waiting for it to appear)"
        return render(summary, f"{path}{waiting}", phase.stopped)

    with Live(view(), console=console, refresh_per_second=4) as live:
        for line in follow(path, until=lambda: phase.over):
            record = parse_line(line)
            summary.update(record)
            phase.update(record)
            now = time.monotonic()
            if now - last_drawn >= REDRAW_EVERY:
                live.update(view())
                last_drawn = now
        live.update(view())
    if phase.stopped:
        console.print(STOPPED_NOTE)
    return 0
