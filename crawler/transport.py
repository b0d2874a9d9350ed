"""The wire between harvester and downloaders: ``multiprocessing.managers`` over TCP.

The classic master/worker design: the harvester's manager registers
``get_task_queue`` and ``get_result_queue`` (``serving.py``); downloader nodes connect
with the same authkey and call methods on the proxies (``BrokerClient``, here). Three
choices matter:

* JSON: only plain data crosses the wire in both directions, never pickles, so
  holding the key does not let a peer run code on the other side. (The managers'
  own ``xmlrpclib`` format is safe too, but its pure-Python unmarshaller cost the
  harvester ~150 us of CPU per result; ``json`` is C, and the wire is plain data
  either way.) Tuples arrive as lists, as with XML-RPC; anything that is not JSON
  data cannot be sent, and the server then answers ``#UNSERIALIZABLE``.
* ``TCP_NODELAY`` on every connection: the manager writes a large message as a
  4-byte header and then the body, and Nagle's algorithm plus delayed ACKs would
  stall each such round trip by ~40 ms.
* A client connection that cooperates with gevent: ``multiprocessing.connection``
  reads and writes the raw descriptor with ``os.read``/``os.write``, which gevent does
  not patch, so on a (non-blocking) gevent socket they fail with EAGAIN. Under gevent
  we read and write through ``gevent.os`` instead, which waits on the hub.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Connection,
    ConnectionWrapper,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from multiprocessing.managers import BaseManager, BaseProxy, listener_client
from typing import Any

from crawler.errors import AuthKeyError, BrokerUnavailable

SERIALIZER = "crawler-json"
TASK_QUEUE_METHODS = ("join", "lease", "extend", "leave", "status")
RESULT_QUEUE_METHODS = ("put_results",)
LISTEN_BACKLOG = 1024
# Failures of the network or of a harvester that went away: worth a retry.
TRANSIENT_ERRORS = (OSError, EOFError)


# Built once: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _json_dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


@functools.cache
def _cooperative_connection_class() -> type[Connection]:
    import gevent.os

    class CooperativeConnection(Connection):
        def _send(self, buf: bytes, write: Any = gevent.os.nb_write) -> None:
            super()._send(buf, write)

        def _recv(self, size: int, read: Any = gevent.os.nb_read) -> Any:
            return super()._recv(size, read)

    return CooperativeConnection


def _client(address: tuple[str, int], authkey: bytes | None = None) -> ConnectionWrapper:
    """Open an authenticated, JSON-speaking connection to a manager."""
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection_class = _cooperative_connection_class() if _gevent_patched() else Connection
    connection = connection_class(sock.detach())
    try:
        if authkey is not None:
            answer_challenge(connection, authkey)
            deliver_challenge(connection, authkey)
    except BaseException:
        connection.close()
        raise
    return ConnectionWrapper(connection, _json_dumps, _json_loads)


class _DeepQueueListener(Listener):
    """A JSON-speaking listener with a longer accept queue.

    The manager's server asks for 16; a burst of connections beyond that makes the kernel
    drop connection attempts, and each real client caught in it waits 1 s or more.
    """

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        super().__init__(address, family, max(backlog, LISTEN_BACKLOG))

    def accept(self) -> ConnectionWrapper:  # type: ignore[override]
        return ConnectionWrapper(super().accept(), _json_dumps, _json_loads)


# Managers look the serializer name up in this table; ours pairs the JSON listener
# above with the client above.
listener_client.setdefault(SERIALIZER, (_DeepQueueListener, _client))


class TaskQueueProxy(BaseProxy):
    _exposed_ = TASK_QUEUE_METHODS

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        return self._callmethod("join", (node, info))

    def lease(self, node: str, limit: int, wait: float) -> dict[str, Any]:
        return self._callmethod("lease", (node, limit, wait))

    def extend(self, node: str, ids: list[int]) -> bool:
        return self._callmethod("extend", (node, ids))

    def leave(self, node: str) -> bool:
        return self._callmethod("leave", (node,))

    def status(self) -> dict[str, Any]:
        return self._callmethod("status", ())


class ResultQueueProxy(BaseProxy):
    _exposed_ = RESULT_QUEUE_METHODS

    def put_results(self, node: str, results: list[dict[str, Any]]) -> int:
        return self._callmethod("put_results", (node, results))


class _ClientManager(BaseManager):
    pass


_ClientManager.register("get_task_queue", proxytype=TaskQueueProxy)
_ClientManager.register("get_result_queue", proxytype=ResultQueueProxy)


class BrokerClient:
    """A downloader node's view of the harvester: a narrow interface over the proxies.

    Another broker (Redis, say) can replace this class without touching the
    downloader. Raises ``BrokerUnavailable`` for every network failure.
    """

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        self.address = address
        self._manager = _ClientManager(address=address, authkey=authkey, serializer=SERIALIZER)
        try:
            self._manager.connect()
            self._tasks: TaskQueueProxy = self._manager.get_task_queue()
            self._results: ResultQueueProxy = self._manager.get_result_queue()
        except AuthenticationError:
            raise AuthKeyError(
                f"the harvester at {self.where} rejected our authkey: "
                "every node needs the same key (CRAWLER_AUTHKEY or --authkey-file)"
            ) from None
        except TRANSIENT_ERRORS as exc:
            raise BrokerUnavailable(f"harvester at {self.where} is not reachable: {exc}") from exc

    @property
    def where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except TRANSIENT_ERRORS as exc:
            self._drop_connection()
            raise BrokerUnavailable(f"lost the harvester at {self.where}: {exc!r}") from exc

    def _drop_connection(self) -> None:
        """Forget this thread's (greenlet's) broken connection to the harvester.

        Proxies cache one connection per address and thread in state shared by every
        proxy of that address (``BaseProxy._address_to_local``), so a new client would
        otherwise reuse the dead socket after the harvester restarts.
        """
        local = getattr(self._tasks, "_tls", None)
        connection = getattr(local, "connection", None)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()
            del local.connection

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        return self._call(self._tasks.join, node, info)

    def lease_batch(self, node: str, limit: int, wait: float = 1.0) -> dict[str, Any]:
        return self._call(self._tasks.lease, node, limit, wait)

    def extend_leases(self, node: str, ids: list[int]) -> bool:
        return self._call(self._tasks.extend, node, ids)

    def report_results(self, node: str, results: list[dict[str, Any]]) -> int:
        return self._call(self._results.put_results, node, results)

    def leave(self, node: str) -> bool:
        return self._call(self._tasks.leave, node)

    def status(self) -> dict[str, Any]:
        """The harvester's figures, nodes and per-host state (``Broker.status``)."""
        return self._call(self._tasks.status)
