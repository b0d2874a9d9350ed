"""The progress log: one logfmt line per event, and the summary ``crawler tail`` keeps.

Logs are data: the harvester writes ``ts=… event=stored url=… bytes=… node=…`` lines,
flushed one by one or a batch at a time, and everything else (``tail``, ``grep``, later
reports) reads them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from crawler.errors import ConfigError
from crawler.output.manifest import LineFile
from crawler.records import error_code

_BARE = re.compile(r"^[A-Za-z0-9_.:/@+\-%?&=,~#\[\]!*;$'()]*$")
_PAIR = re.compile(r'([A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|\S*)')
_UNESCAPE = {"n": "\n", "r": "\r"}


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    text = str(value)
    if text and _BARE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    # Escape \r too: readers with universal newlines (Python's open) end a line there.
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


_second_stamp: tuple[int, str] = (-1, "")


def format_ts(ts: float) -> str:
    """``2026-11-25T17:10:08.123Z``; the part up to the second is formatted once per second."""
    global _second_stamp
    second = int(ts)
    if _second_stamp[0] != second:
        _second_stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_stamp[1]}.{int((ts - second) * 1000):03d}Z"


def format_line(event: str, fields: dict[str, Any], ts: float) -> str:
    stamp = format_ts(ts)
    parts = [f"ts={stamp}", f"event={format_value(event)}"]
    parts += [f"{key}={format_value(value)}" for key, value in fields.items() if value is not None]
    return " ".join(parts)


def parse_line(line: str) -> dict[str, str]:
    """logfmt line -> dict of strings (quoted values unescaped)."""
    record = {}
    for key, raw in _PAIR.findall(line):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), raw[1:-1])
        record[key] = raw
    return record


class ProgressLog:
    """Appends events to the log file, flushed per line so ``tail`` sees them at once,
    or once per ``batch()`` (the harvester records a batch of results that way)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = LineFile(path)

    def event(self, event: str, **fields: Any) -> None:
        self._file.write_line(format_line(event, fields, time.time()))

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Events inside are flushed together when the outermost batch ends."""
        return self._file.batch()

    def close(self) -> None:
        self._file.close()


@dataclass
class NodeStats:
    stored: int = 0
    failed: int = 0
    state: str = "joined"
    last_ts: float | None = None
    recent: deque[float] = field(default_factory=deque)


@dataclass
class Summary:
    """Running figures folded from log records; what ``tail`` shows."""

    pages: int = 0
    queued: int = 0
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    finished: bool = False
    nodes: dict[str, NodeStats] = field(default_factory=lambda: defaultdict(NodeStats))
    recent: deque[float] = field(default_factory=deque)
    first_ts: float | None = None
    last_ts: float | None = None
    busy_hosts: str = ""  # from the latest event=hosts: host=in_flight/limit,...
    throttled_hosts: str = ""
    recent_bytes: deque[tuple[float, int]] = field(default_factory=deque)
    failures: Counter[str] = field(default_factory=Counter)  # by reason
    frontier: int | None = None  # pages still to fetch, from the latest totals
    known: int = 0  # image URLs known, from the latest totals
    seeds: str = ""

    def update(self, record: dict[str, str]) -> None:
        event = record.get("event")
        ts = parse_ts(record.get("ts"))
        if ts is not None:
            self.first_ts = self.first_ts if self.first_ts is not None else ts
            self.last_ts = ts
        node = record.get("node")
        if node and ts is not None:
            self.nodes[node].last_ts = ts
        if event == "page_fetched":
            self.pages += 1
        elif event == "queued":
            self.queued += 1
        elif event == "stored":
            self.stored += 1
            size = _int(record.get("bytes"))
            self.bytes += size
            if ts is not None:
                _keep_recent(self.recent, ts, ts)
                _keep_recent(self.recent_bytes, (ts, size), ts)
            if node:
                self.nodes[node].stored += 1
                if ts is not None:
                    _keep_recent(self.nodes[node].recent, ts, ts)
        elif event == "failed":
            self.failed += 1
            self.failures[error_code(record.get("error"))] += 1
            if node:
                self.nodes[node].failed += 1
        elif event == "totals":
            self.frontier = _int(record.get("frontier"))
            self.known = _int(record.get("queued"))
        elif event in ("crawl_started", "crawl_resumed"):
            self.seeds = record.get("seeds", "")
        elif event in ("node_joined", "node_left", "node_lost") and node:
            self.nodes[node].state = event.removeprefix("node_")
        elif event == "hosts":
            self.busy_hosts = record.get("busy", "")
            self.throttled_hosts = record.get("throttled", "")
        elif event == "crawl_finished":
            self.finished = True

    def images_per_second(
        self, window: float = 10.0, stamps: Iterable[float] | None = None
    ) -> float:
        """Stored images per second over the last ``window`` seconds of the log (of
        ``stamps``, one node's, when given)."""
        stamps = self.recent if stamps is None else stamps
        if self.last_ts is None:
            return 0.0
        start = max(self.last_ts - window, self.first_ts or self.last_ts)
        count = sum(1 for ts in stamps if ts >= start)
        span = self.last_ts - start
        return count / span if span > 0 else 0.0

    def bytes_per_second(self, window: float = 60.0) -> float:
        if self.last_ts is None:
            return 0.0
        start = max(self.last_ts - window, self.first_ts or self.last_ts)
        total = sum(size for ts, size in self.recent_bytes if ts >= start)
        span = self.last_ts - start
        return total / span if span > 0 else 0.0

    def eta_seconds(self, window: float = 60.0) -> float | None:
        """Time to finish at the current rate, once every page is fetched (before that
        the number of images is not known)."""
        if self.finished or self.frontier != 0 or not self.known:
            return None
        rate = self.images_per_second(window)
        remaining = self.known - self.stored - self.failed
        return remaining / rate if rate > 0 and remaining > 0 else None

    def render(self) -> str:
        lines = [
            f"== pages {self.pages}  queued {self.queued}  stored {self.stored}  "
            f"failed {self.failed}  {self.bytes / 1e6:.1f} MB  "
            f"{self.images_per_second():.1f} images/s" + ("  [finished]" if self.finished else "")
        ]
        for node, stats in sorted(self.nodes.items()):
            lines.append(
                f"   node {node}: {stats.state}, stored {stats.stored}, failed {stats.failed}"
            )
        if self.busy_hosts and not self.finished:
            lines.append(f"   in flight per host: {self.busy_hosts.replace(',', ', ')}")
        if self.throttled_hosts and not self.finished:
            lines.append(f"   throttled: {self.throttled_hosts.replace(',', ', ')}")
        return "\n".join(lines)


RATE_HORIZON = 60.0  # seconds of log kept for rates: the longest window asked for


def _keep_recent(stamps: deque, item: Any, ts: float) -> None:
    """Append, and drop what is older than ``RATE_HORIZON`` before ``ts``: bounded by
    time, not by count, so a fast crawl's rate over a minute is not cut short."""
    stamps.append(item)
    while stamps:
        first = stamps[0]
        if (first[0] if isinstance(first, tuple) else first) >= ts - RATE_HORIZON:
            break
        stamps.popleft()


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def parse_ts(text: str | None) -> float | None:
    """A log line's ``ts`` as a Unix time (None when absent or malformed)."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def follow(
    path: Path,
    poll: float = 0.2,
    idle_timeout: float | None = None,
    until: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Yield complete lines of a growing file, like ``tail -f``, from its beginning.

    Waits for the file to appear; notices truncation or replacement (log rotation)
    and starts over on the new file. Stops after ``idle_timeout`` seconds without a
    new line when given, and when ``until()`` is true at the end of the file (every
    line written so far yielded, none half-written).
    """
    handle = None
    inode = None
    pending = ""
    idle_since = time.monotonic()
    try:
        while True:
            if handle is None:
                try:
                    handle = path.open(encoding="utf-8", errors="replace")
                    inode = path.stat().st_ino
                except FileNotFoundError:
                    handle = None
            chunk = handle.read() if handle is not None else ""
            if chunk:
                idle_since = time.monotonic()
                pending += chunk
                *lines, pending = pending.split("\n")
                yield from lines
                continue
            if handle is not None and _replaced(path, inode, handle):
                handle.close()
                handle, pending = None, ""
                continue
            if until is not None and handle is not None and not pending and until():
                return
            if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                return
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()


def _replaced(path: Path, inode: int | None, handle: IO[str]) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    return stat.st_ino != inode or stat.st_size < handle.tell()


# The harvester writes one of these as it starts, resumes, is stopped by a signal and
# finishes; a log whose latest one is an end has nothing more coming until a resume.
LIFECYCLE_EVENTS = frozenset({"crawl_started", "crawl_resumed", "crawl_stopped", "crawl_finished"})
END_EVENTS = frozenset({"crawl_stopped", "crawl_finished"})
STOPPED_NOTE = "crawl stopped; run the same harvest command again to resume"


@dataclass
class CrawlPhase:
    """The latest lifecycle event in the log read so far: whether ``tail`` may end."""

    last: str | None = None

    def update(self, record: dict[str, str]) -> None:
        if record.get("event") in LIFECYCLE_EVENTS:
            self.last = record["event"]

    @property
    def over(self) -> bool:
        return self.last in END_EVENTS

    @property
    def stopped(self) -> bool:
        return self.last == "crawl_stopped"


def check_log_path(path: Path) -> None:
    """Raise ``ConfigError`` for a log path that no harvester can be writing to: a
    folder, or a file in a folder that does not exist."""
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder: give the progress log in it, e.g. {path}/progress.log"
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"cannot follow {path}: the folder {path.parent} does not exist "
            "(check the path, or start the harvester first)"
        )


def tail_log(path: Path, summary_every: float = 5.0, only: frozenset[str] | None = None) -> int:
    """Print the log's lines as they come, with a summary every ``summary_every`` s.

    ``only`` limits the printed lines to those events (the summary counts them all).
    Ends with the final summary once the whole log is read and its latest lifecycle
    event is ``crawl_finished`` or ``crawl_stopped`` (then saying how to resume), also
    for a log read after the crawl ended. A missing log is waited for; a missing
    folder raises ``ConfigError``.
    """
    check_log_path(path)
    if not path.exists():
        print(f"waiting for {path} to appear...", flush=True)
    summary, phase = Summary(), CrawlPhase()
    last_summary, summary_is_current = time.monotonic(), False
    for line in follow(path, until=lambda: phase.over):
        record = parse_line(line)
        if only is None or record.get("event") in only:
            print(line, flush=True)
        summary.update(record)
        phase.update(record)
        summary_is_current = time.monotonic() - last_summary >= summary_every
        if summary_is_current:
            print(summary.render(), flush=True)
            last_summary = time.monotonic()
    if not summary_is_current:
        print(summary.render(), flush=True)
    if phase.stopped:
        print(STOPPED_NOTE, flush=True)
    return 0
