"""Virtual time for gevent loops: sleeps end in order, at once, when all else waits.

A greenlet that sleeps (``sleep``, ``wait`` with a timeout) is parked on a heap of
wake-up times. ``run_until`` drives the loop: whenever every greenlet is waiting
(``gevent.idle``), time jumps to the earliest wake-up and that sleeper goes on. So a
test of a loop that waits minutes of its own time runs in milliseconds, with every
interleaving fixed by the times alone: deterministic.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

import gevent
import gevent.event


class Deadlock(AssertionError):
    """Nothing can run and nothing sleeps, but the awaited condition is not met."""


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._sleepers: list[list] = []  # [wake time, order, event, still waiting]
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    def _park(self, seconds: float) -> list:
        entry = [self.time + seconds, next(self._order), gevent.event.Event(), True]
        heapq.heappush(self._sleepers, entry)
        return entry

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            gevent.sleep(0)
            return
        entry = self._park(seconds)
        entry[2].wait()

    def wait(self, event: gevent.event.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` of virtual time have passed."""
        if event.is_set():
            return
        entry = self._park(seconds)
        try:
            gevent.wait([event, entry[2]], count=1)
        finally:
            entry[3] = False

    def _wake_next(self) -> bool:
        while self._sleepers:
            wake, _, event, waiting = heapq.heappop(self._sleepers)
            if waiting and not event.is_set():
                self.time = max(self.time, wake)
                event.set()
                return True
        return False

    def run_until(
        self, done: Callable[[], bool], virtual_limit: float, real_limit: float = 20.0
    ) -> None:
        """Drive time until ``done()``; fails past ``virtual_limit`` seconds of virtual
        time or ``real_limit`` seconds of real time (a loop that never settles)."""
        start, real_end = self.time, time.monotonic() + real_limit
        while not done():
            gevent.idle()
            if done():
                return
            if time.monotonic() > real_end:
                raise AssertionError(f"not done after {real_limit} s of real time")
            if not self._wake_next():
                gevent.sleep(0.001)  # something real (a thread) may still finish
                if not self._sleepers and not done():
                    gevent.idle()
                    if not self._sleepers and not done():
                        raise Deadlock("nothing sleeps and nothing runs")
            if self.time - start > virtual_limit:
                raise AssertionError(f"not done after {virtual_limit} s of virtual time")
