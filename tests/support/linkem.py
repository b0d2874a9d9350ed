"""A network link between two namespaces that loses, delays, reorders and cuts packets.

What ``tc qdisc ... netem`` does, in user space: this machine's kernel (and CI's, the
same kind) is built without ``sch_netem`` (``Specified qdisc kind is unknown``), so
the link is two TUN devices, one in each namespace, and a thread of the test's
process carries each IP packet from one to the other. On the way a packet may be
dropped (``loss``), held ``delay`` ± ``jitter`` seconds (uniformly: packets overtake
each other, as with netem's jitter), or dropped because the link is ``down`` (a
partition: silent, as a pulled cable between switches; no error reaches either end).
Both directions, independently; seeded, so a run's faults can be repeated.

Needs root and ``ip`` (iproute2). ``Namespaces`` makes the namespaces and removes
them, with their links, at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def open_tun(name: str) -> int:
    """A new TUN device ``name`` (IP packets, no extra header) in this namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class Faults:
    """What the link does to each packet now; change it while the link runs."""

    loss: float = 0.0  # probability that a packet is dropped
    delay: float = 0.0  # seconds each packet is held
    jitter: float = 0.0  # ± seconds on top, uniformly
    down: bool = False  # every packet dropped: a partition


@dataclass
class Counts:
    forwarded: int = 0
    dropped: int = 0
    cut: int = 0  # dropped while down


@dataclass
class Link:
    """Two TUN devices joined by a thread: ``a`` in ``ns_a`` with address ``addr_a``,
    ``b`` in ``ns_b`` with ``addr_b``, each other's point-to-point peer."""

    name: str
    ns_a: str
    addr_a: str
    ns_b: str
    addr_b: str
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._stop = threading.Event()
        self._fds: list[int] = []
        for side, ns, here, there in (
            ("a", self.ns_a, self.addr_a, self.addr_b),
            ("b", self.ns_b, self.addr_b, self.addr_a),
        ):
            device = f"{self.name}{side}"
            self._fds.append(open_tun(device))
            ip("link", "set", device, "netns", ns)
            ip("-n", ns, "addr", "add", here, "peer", there, "dev", device)
            ip("-n", ns, "link", "set", device, "up")
        self._thread = threading.Thread(target=self._carry, name=f"link {self.name}", daemon=True)
        self._thread.start()

    def device(self, side: str) -> str:
        return f"{self.name}{side}"

    def set(self, **faults: float | bool) -> None:
        for key, value in faults.items():
            setattr(self.faults, key, value)

    def _carry(self) -> None:
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        other = {self._fds[0]: self._fds[1], self._fds[1]: self._fds[0]}
        held: list[tuple[float, int, int, bytes]] = []  # (release at, order, to fd, packet)
        order = 0
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 100 if not held else max(0, min(100, (held[0][0] - now) * 1000))
            for fd, _event in poller.poll(timeout):
                for _ in range(64):  # what is waiting, a bounded number at a time
                    try:
                        packet = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        break
                    order += 1
                    release = self._admit(time.monotonic())
                    if release is not None:
                        heapq.heappush(held, (release, order, other[fd], packet))
            now = time.monotonic()
            while held and held[0][0] <= now:
                _, _, to, packet = heapq.heappop(held)
                with contextlib.suppress(OSError):  # the far device went away
                    os.write(to, packet)
                    self.counts.forwarded += 1

    def _admit(self, now: float) -> float | None:
        """When to pass a packet on, or None to drop it."""
        faults = self.faults
        if faults.down:
            self.counts.cut += 1
            return None
        if faults.loss and self._random.random() < faults.loss:
            self.counts.dropped += 1
            return None
        spread = self._random.uniform(-faults.jitter, faults.jitter) if faults.jitter else 0.0
        return now + max(0.0, faults.delay + spread)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class Namespaces:
    """Network namespaces made for one test (``add``), and the links between them;
    ``close`` removes them all. Names carry the test process's id."""

    def __init__(self) -> None:
        self.tag = str(os.getpid())[-5:]
        self.names: list[str] = []
        self.links: list[Link] = []

    def add(self, role: str) -> str:
        name = f"lk{role}{self.tag}"
        ip("netns", "add", name)
        self.names.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, key: str, ns_a: str, addr_a: str, ns_b: str, addr_b: str) -> Link:
        made = Link(f"t{key}{self.tag}", ns_a, addr_a, ns_b, addr_b, seed=len(self.links))
        self.links.append(made)
        return made

    def close(self) -> None:
        for link in self.links:
            link.close()
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def exec_in(ns: str) -> list[str]:
    """The command prefix that runs a program in namespace ``ns``."""
    return ["ip", "netns", "exec", ns]
