"""Run a tool's processes and measure them: wall time, CPU of the whole process tree,
peak RSS per process, and how many ground-truth images the tool stored.

CPU comes from ``wait4()`` on each process we start: Linux reports the process's own
time plus that of every descendant it waited for, so short-lived workers (pool
processes, a node's children) are counted exactly, however briefly they lived. Sampling
the tree every 0.2 s with psutil would miss the last slice of every process that exits
between samples; we sample anyway, for peak RSS per process (which ``wait4`` only gives
as one maximum), as a cross-check of the CPU figure (they agree within ~1 %), and for a
tool killed at its timeout, whose orphaned children init reaps instead of the tool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_EVERY = 0.2
POLL_EVERY = 0.02
GRACE_SECONDS = 5.0


@dataclass
class ProcStats:
    """What the sampler saw of one process."""

    pid: int
    role: str
    cmd: str
    peak_rss: int = 0
    cpu: float = 0.0  # user + system, last sample
    user: float = 0.0  # user alone, last sample


@dataclass
class Launch:
    """One top-level process of a tool; `role` names it in the results."""

    role: str
    argv: list[str]
    env: dict[str, str] | None = None
    start_delay: float = 0.0  # seconds after the previous launch


@dataclass
class RunResult:
    wall: float
    timed_out: bool
    exit_codes: dict[str, int | None]
    cpu_wait4: float  # user + system of the roots and all their reaped descendants
    cpu_sampled: float  # sum of each pid's last sampled user + system
    user_wait4: float  # user alone, as cpu_wait4
    user_sampled: float
    maxrss_wait4: int  # bytes, largest single process according to the kernel
    procs: list[ProcStats] = field(default_factory=list)


class ToolRun:
    """Start a tool's processes in their own sessions, sample them, reap them with wait4.

    Every pid seen is remembered, so `kill_all` can also reach descendants that put
    themselves in a session of their own (our downloader's children do).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.popens: dict[str, subprocess.Popen] = {}
        self.seen: dict[int, ProcStats] = {}
        self._handles: list = []

    def run(
        self,
        launches: list[Launch],
        timeout: float,
        on_started: Callable[[dict[str, int]], None] | None = None,
    ) -> RunResult:
        """Start `launches` in order, wait for all (at most `timeout` s), kill leftovers."""
        started = time.monotonic()
        for launch in launches:
            if launch.start_delay:
                self._sleep_sampling(launch.start_delay)
            self._start(launch)
        if on_started is not None:
            on_started({role: popen.pid for role, popen in self.popens.items()})
        codes: dict[str, int | None] = {role: None for role in self.popens}
        usage = {"cpu": 0.0, "user": 0.0, "maxrss": 0}
        timed_out = False
        next_sample = 0.0
        # Exits are looked for every POLL_EVERY s (the wall time's resolution), the
        # process tree sampled every SAMPLE_EVERY s (sampling costs the tools some CPU).
        while any(code is None for code in codes.values()):
            now = time.monotonic()
            if now >= next_sample:
                self._sample()
                next_sample = now + SAMPLE_EVERY
            for role, popen in self.popens.items():
                if codes[role] is None:
                    codes[role] = self._reap(popen, usage)
            if now - started > timeout:
                timed_out = True
                break
            time.sleep(POLL_EVERY)
        wall = time.monotonic() - started
        if timed_out:
            self.kill_all()
            for role, popen in self.popens.items():
                if codes[role] is None:
                    codes[role] = self._reap(popen, usage, block=True)
        for handle in self._handles:
            handle.close()
        return RunResult(
            wall=wall,
            timed_out=timed_out,
            exit_codes=codes,
            cpu_wait4=usage["cpu"],
            cpu_sampled=sum(p.cpu for p in self.seen.values()),
            user_wait4=usage["user"],
            user_sampled=sum(p.user for p in self.seen.values()),
            maxrss_wait4=usage["maxrss"],
            procs=list(self.seen.values()),
        )

    def _start(self, launch: Launch) -> None:
        out = (self.workdir / f"{launch.role}.stdout").open("wb")
        err = (self.workdir / f"{launch.role}.stderr").open("wb")
        self._handles += [out, err]
        popen = subprocess.Popen(
            launch.argv,
            env=launch.env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        self.popens[launch.role] = popen
        self.seen[popen.pid] = ProcStats(popen.pid, launch.role, " ".join(launch.argv))

    def _sleep_sampling(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._sample()
            time.sleep(min(SAMPLE_EVERY, max(0.0, end - time.monotonic())))

    def _sample(self) -> None:
        for role, popen in self.popens.items():
            try:
                root = psutil.Process(popen.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    with proc.oneshot():
                        if proc.status() == psutil.STATUS_ZOMBIE:
                            continue
                        rss = proc.memory_info().rss
                        times = proc.cpu_times()
                        stats = self.seen.get(proc.pid)
                        if stats is None:
                            cmd = " ".join(proc.cmdline())
                            stats = self.seen[proc.pid] = ProcStats(proc.pid, role, cmd)
                except psutil.Error:
                    continue
                stats.peak_rss = max(stats.peak_rss, rss)
                stats.cpu = max(stats.cpu, times.user + times.system)
                stats.user = max(stats.user, times.user)

    @staticmethod
    def _reap(popen: subprocess.Popen, usage: dict, block: bool = False) -> int | None:
        """wait4 the process; add its (and its reaped descendants') CPU to `usage`."""
        try:
            pid, status, rusage = os.wait4(popen.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return popen.returncode
        if pid == 0:
            return None
        popen.returncode = os.waitstatus_to_exitcode(status)
        usage["cpu"] += rusage.ru_utime + rusage.ru_stime
        usage["user"] += rusage.ru_utime
        usage["maxrss"] = max(usage["maxrss"], rusage.ru_maxrss * 1024)  # KiB on Linux
        return popen.returncode

    def kill_all(self) -> None:
        """SIGTERM every process of the tool, then SIGKILL whatever is still there."""
        pids = set(self.seen)
        for popen in self.popens.values():
            with contextlib.suppress(psutil.Error):
                pids.update(c.pid for c in psutil.Process(popen.pid).children(recursive=True))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in pids if _alive(pid)]
            for pid in alive:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + GRACE_SECONDS
            while sig == signal.SIGTERM and time.monotonic() < deadline:
                if not any(_alive(pid) for pid in alive):
                    break
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def children_cpu() -> float:
    """CPU of all children this process has reaped so far (a check on the wait4 sums)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stored_hashes(out: Path, max_bytes: int = 64 << 20) -> dict[str, int]:
    """sha256 -> number of files with that content, for every regular file under `out`.

    Each tool names and nests its files its own way; hashing everything it left there
    (its manifests and logs never collide with an image hash) compares them all alike.
    """
    found: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if os.path.getsize(path) > max_bytes or os.path.islink(path):
                    continue
                with open(path, "rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                continue
            found[digest] = found.get(digest, 0) + 1
    return found
