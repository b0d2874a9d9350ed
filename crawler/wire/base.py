"""The seam between a downloader node and the crawl's broker: one narrow interface.

``BrokerClient`` is what a node calls, in typed records (``records.py``). Each wire
(``wire/__init__.py`` picks one by URL scheme) only has to move the records' wire form
(``RawWire``); ``RecordClient`` turns that into the typed interface, so every wire
speaks exactly the same records.

Errors a caller sees, whatever the wire:

* ``BrokerUnavailable`` (``crawler.errors``): the network or the broker went away;
  the call may or may not have arrived, so it is retried after a reconnect. (Every
  call is idempotent on the broker's side: a result twice is counted once.)
* ``CallFailed``: the broker received the call and failed to take it (its disk full,
  say); it kept nothing of it, and the same call goes again after a pause.
* ``AuthKeyError`` and ``NotAHarvester`` (``crawler.errors``): final, never retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from crawler.records import JoinReply, LeaseReply, Result


class CallFailed(Exception):
    """The broker received a call and failed to take it; nothing of it was kept."""


class BrokerClient(Protocol):
    """A node's view of the broker. ``node`` names the calling node in every call."""

    where: str  # the broker, for messages (``HOST:PORT``, a URL, ...)

    def join(self, node: str, info: dict[str, Any]) -> JoinReply:
        """Register (or register again) with ``info`` (host, pid, concurrency)."""

    def lease_batch(self, node: str, limit: int, wait: float = 1.0) -> LeaseReply:
        """Lease up to ``limit`` tasks, waiting up to ``wait`` s for some to appear."""

    def extend_leases(self, node: str, ids: Sequence[int]) -> None:
        """Heartbeat: the node is alive and still works on ``ids``."""

    def report_results(self, node: str, results: Sequence[Result]) -> int:
        """Hand in results; returns how many made a task final. At-least-once: a
        result sent again (after a lost reply) changes nothing."""

    def leave(self, node: str) -> None:
        """Goodbye: the node's leases (there should be none) go back to the queue."""

    def status(self) -> dict[str, Any]:
        """The broker's figures, nodes and per-host state, as plain data."""

    def close(self) -> None:
        """Release the connection; the client is not used again."""


class RawWire(Protocol):
    """What a wire moves: the same calls as ``BrokerClient``, in wire form (plain JSON
    data), with the errors already mapped as ``BrokerClient`` describes."""

    where: str

    def join(self, node: str, info: dict[str, Any]) -> Any: ...
    def lease_batch(self, node: str, limit: int, wait: float) -> Any: ...
    def extend_leases(self, node: str, ids: list[int]) -> Any: ...
    def report_results(self, node: str, results: list[dict[str, Any]]) -> Any: ...
    def leave(self, node: str) -> Any: ...
    def status(self) -> Any: ...
    def close(self) -> None: ...


class RecordClient:
    """``BrokerClient`` over any ``RawWire``: records to wire form and back."""

    def __init__(self, raw: RawWire) -> None:
        self.raw = raw
        self.where = raw.where

    def join(self, node: str, info: dict[str, Any]) -> JoinReply:
        return JoinReply.from_wire(self.raw.join(node, info))

    def lease_batch(self, node: str, limit: int, wait: float = 1.0) -> LeaseReply:
        return LeaseReply.from_wire(self.raw.lease_batch(node, limit, wait))

    def extend_leases(self, node: str, ids: Sequence[int]) -> None:
        self.raw.extend_leases(node, list(ids))

    def report_results(self, node: str, results: Sequence[Result]) -> int:
        finished = self.raw.report_results(node, [result.to_wire() for result in results])
        return finished if type(finished) is int else 0

    def leave(self, node: str) -> None:
        self.raw.leave(node)

    def status(self) -> dict[str, Any]:
        status = self.raw.status()
        return status if isinstance(status, dict) else {}

    def close(self) -> None:
        self.raw.close()
