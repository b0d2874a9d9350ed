"""The in-process wire: a node and a ``Broker`` in one process (tests, tools).

Every call makes a JSON round trip, as on a real wire, so that only the records' wire
form crosses. A long poll does not wait inside the broker (whose lock is a thread
lock): the broker is asked without waiting, and the wait happens here with the
caller's ``sleep`` and ``now``, so that a test's fake clock (or gevent) controls it.

Faults for tests of the loops on either side (``Faults``, shared by the clients of one
test, as a network is): ``unavailable`` makes every call raise ``BrokerUnavailable``
(a harvester gone), ``fail_calls`` makes that many next calls raise ``CallFailed`` (a
harvester that failed to take them); ``calls`` lists the calls made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crawler.broker.broker import Broker
from crawler.errors import BrokerUnavailable
from crawler.wire.base import CallFailed

POLL_SECONDS = 0.05  # how often a long poll asks the broker again


@dataclass
class Faults:
    unavailable: bool = False
    fail_calls: int = 0
    fail_only: str = ""  # the broker method whose calls fail_calls counts ("": any)
    calls: list[str] = field(default_factory=list)


def _across(data: Any) -> Any:
    """``data`` as the other side of a JSON wire receives it."""
    return json.loads(json.dumps(data, allow_nan=False))


class InProcessServer:
    """A ``Broker`` served in this process; once stopped, its clients' calls raise
    ``BrokerUnavailable``, as on a wire whose server went away."""

    def __init__(self, broker: Broker, where: str) -> None:
        self.broker = broker
        self.where = where
        self.serving = False

    def start(self) -> None:
        self.serving = True

    def stop(self) -> None:
        self.serving = False


class InProcessWire:
    """``RawWire`` straight to the ``Broker`` of ``server`` (a stopped server answers
    nothing), waiting with ``sleep`` and ``now``."""

    def __init__(
        self,
        server: InProcessServer,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
    ) -> None:
        self.server = server
        self.where = server.where
        self._sleep = sleep
        self._now = now
        self.faults = faults or Faults()
        self.closed = False

    def _call(self, name: str, *args: Any) -> Any:
        faults = self.faults
        faults.calls.append(name)
        if self.closed:
            raise BrokerUnavailable(f"the client of {self.where} is closed")
        if faults.unavailable or not self.server.serving:
            raise BrokerUnavailable(f"lost the harvester at {self.where}")
        if faults.fail_calls > 0 and faults.fail_only in ("", name):
            faults.fail_calls -= 1
            raise CallFailed(f"the harvester at {self.where} failed to take {name}")
        return _across(getattr(self.server.broker, name)(*_across(list(args))))

    def join(self, node: str, info: dict[str, Any]) -> Any:
        return self._call("join", node, info)

    def lease_batch(self, node: str, limit: int, wait: float) -> Any:
        deadline = self._now() + max(wait, 0.0)
        while True:
            reply = self._call("lease_batch", node, limit, 0.0)
            if reply["tasks"] or reply["done"] or self._now() >= deadline:
                return reply
            self._sleep(min(POLL_SECONDS, max(deadline - self._now(), 0.0)))

    def extend_leases(self, node: str, ids: list[int]) -> Any:
        return self._call("extend_leases", node, ids)

    def report_results(self, node: str, results: list[dict[str, Any]]) -> Any:
        return self._call("report_results", node, results)

    def leave(self, node: str) -> Any:
        return self._call("leave", node)

    def status(self) -> Any:
        return self._call("status")

    def close(self) -> None:
        self.closed = True
