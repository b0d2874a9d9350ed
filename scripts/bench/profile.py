"""Optional py-spy profiles of a tool's processes during a run (``--profile``).

py-spy samples from outside (``--nonblocking``: it never stops the target; ``--gil``:
only threads running Python code count), so the crawler runs unmodified; the run's
timings are still a little perturbed, which is why profiling is an option and not part
of the measured runs. Output: py-spy's raw collapsed stacks per root process (children
included) and a summary of the functions the processes were busy in, by own samples and
by samples including callees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE = 97  # samples per second; not a multiple of any timer in the crawler
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, output: Path) -> subprocess.Popen | None:
    """Record `pid` and its children until it exits; None when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        return None
    # --gil: only samples of a thread holding the GIL, i.e. running Python code. Threads
    # waiting on a lock, a socket or fsync drop out, so the shares are shares of CPU.
    argv = [binary, "record", "--nonblocking", "--gil", "--subprocesses", "--format", "raw"]
    argv += ["--rate", str(RATE), "--output", str(output), "--pid", str(pid)]
    log = output.with_suffix(".log").open("wb")
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


# Our harvester's samples by stage of the page path: the first rule whose marker is in a
# sample's stack names it (the markers are function names of the crawler's code).
HARVESTER_STAGES = (
    ("parse: BeautifulSoup's soup of the kept elements", "parse_kept"),
    ("parse: visiting the elements (URLs resolved)", "_Collector."),
    ("parse: the rest of extract_page (decoding)", "extract_page"),
    ("parse workers: start-up, imports, waiting for work", "spawn_main"),
    ("pages to and from the parse workers", "PageParser"),
    ("pages to and from the parse workers", "concurrent/futures/process"),
    ("page threads: HTTP (requests, urllib3, our checks)", "fetch_page"),
    ("main loop: frontier, task queue, log per page", "_handle_page"),
    ("main loop: results into the manifest and log", "_record_updates"),
    ("main loop: starting pages, the rest", "_crawl"),
    ("serving the downloaders (leases, results)", "manager_server"),
    ("start-up: imports", "_find_and_load"),
)


def _samples(raw: Path) -> Iterator[tuple[str, int]]:
    """py-spy's raw output: (stack, samples) per line."""
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack, int(count)


def stages(raw: Path, rules: tuple[tuple[str, str], ...] = HARVESTER_STAGES) -> list[list]:
    """Shares of all samples by stage, ``[[label, percent], ...]``, biggest first;
    samples no rule names are ``other``."""
    counts: Counter[str] = Counter()
    total = 0
    for stack, samples in _samples(raw):
        label = next((label for label, marker in rules if marker in stack), "other")
        counts[label] += samples
        total += samples
    if not total:
        return []
    return [[label, round(100 * n / total, 1)] for label, n in counts.most_common()]


def summarize(raw: Path, top: int = 15) -> dict:
    """Top functions by own samples and by inclusive samples, as % of all samples.

    A frame is ``function (file:line)``; lines are dropped so that a function's samples
    add up whatever line it was on. py-spy prefixes stacks with process/thread frames,
    which are skipped.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for stack, samples in _samples(raw):
        frames = [
            _short(_LINE.sub(")", frame))
            for frame in stack.split(";")
            if not frame.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return {"samples": 0, "own": [], "inclusive": []}

    def pct(counter: Counter[str]) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "own": pct(own), "inclusive": pct(inclusive)}


def _short(frame: str) -> str:
    """`fn (/long/path/site-packages/pkg/mod.py)` -> `fn (pkg/mod.py)`."""
    name, _, path = frame.partition(" (")
    for marker in ("site-packages/", "/lib/python3", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}" if path else name


def print_summary(title: str, summary: dict) -> None:
    print(f"\nprofile {title}: {summary['samples']} samples")
    if summary.get("stages"):
        print("  by stage:")
        for name, share in summary["stages"]:
            print(f"    {share:5.1f}%  {name}")
    for kind in ("own", "inclusive"):
        print(f"  top by {kind} time:")
        for name, share in summary[kind]:
            print(f"    {share:5.1f}%  {name}")
