"""The wire between harvester and downloaders: ``multiprocessing.managers`` over TCP.

The classic master/worker design: the harvester's manager registers
``get_task_queue`` and ``get_result_queue`` (``manager_server.py``); downloader nodes connect
with the same authkey and call methods on the proxies (``ManagerWire``, here). Three
choices matter:

* JSON: only plain data crosses the wire in both directions, never pickles, so
  holding the key does not let a peer run code on the other side. (The managers'
  own ``xmlrpclib`` format is safe too, but its pure-Python unmarshaller was a large
  part of the harvester's CPU per result (docs/design-notes.md); ``json`` is C, and
  the wire is plain data either way.) Tuples arrive as lists, as with XML-RPC;
  anything that is not JSON data cannot be sent, and the server then answers
  ``#UNSERIALIZABLE``.
* ``TCP_NODELAY`` on every connection: the manager writes a large message as a
  4-byte header and then the body, and Nagle's algorithm plus delayed ACKs would
  stall each such round trip by ~40 ms.
* A client connection that cooperates with gevent: ``multiprocessing.connection``
  reads and writes the raw descriptor with ``os.read``/``os.write``, which gevent does
  not patch, so on a (non-blocking) gevent socket they fail with EAGAIN. Under gevent
  we read and write through ``gevent.os`` instead, which waits on the hub.

And one guarantee: a client's handshake ends within a deadline (``HANDSHAKE_TIMEOUT``),
whatever the peer does, patched or not, with an error that says what the peer is; an
authenticated connection may then idle for ever. The internals of ``multiprocessing``
all this needs are in ``crawler.compat.multiprocessing``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import socket
import ssl
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener
from multiprocessing.managers import BaseManager, BaseProxy, RemoteError
from typing import Any

from crawler.compat.multiprocessing import (
    NotAChallenge,
    RawIOConnection,
    SerializingConnection,
    SocketConnection,
    client_handshake,
    forget_thread_connection,
    never_decref,
    register_serializer,
    starts_like_a_challenge,
    with_serializer,
)
from crawler.errors import AuthKeyError, BrokerUnavailable, NotAHarvester
from crawler.wire.base import CallFailed
from crawler.wire.tls import handshake_error

SERIALIZER = "crawler-json"
TASK_QUEUE_METHODS = ("join", "lease_batch", "extend_leases", "leave", "status")
RESULT_QUEUE_METHODS = ("report_results",)
LISTEN_BACKLOG = 1024
# Failures of the network or of a harvester that went away: worth a retry.
TRANSIENT_ERRORS = (OSError, EOFError)
# Seconds to connect and pass the key handshake (and, for ManagerWire, get the proxies).
HANDSHAKE_TIMEOUT = 10.0
SETUP_STEPS = 8  # connections a ManagerWire's setup opens, at most (it opens 6)
GREETING_BYTES = 48  # of a peer's first message, peeked at to tell what it is
# A peer gone silent (a partition, a machine powered off) ends the connection after
# about DEAD_PEER_SECONDS, on both sides, instead of TCP's 15 minutes: keepalive
# probes on an idle connection (after 5 s, every 2 s, 4 unanswered) and a bound on
# data left unacknowledged (TCP_USER_TIMEOUT). The node then reconnects.
DEAD_PEER_SECONDS = 15
_KEEPALIVE = (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 4))


# Built once: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _json_dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


def detect_dead_peers(sock: socket.socket) -> None:
    """Set TCP_NODELAY, keepalive and TCP_USER_TIMEOUT on a connected TCP socket (the
    options this system has), so that a silent peer ends it (``DEAD_PEER_SECONDS``)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE:
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_SECONDS * 1000)


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


@dataclass(frozen=True)
class _Deadline:
    at: float  # time.monotonic()
    seconds: float  # as given, for messages

    @classmethod
    def after(cls, seconds: float) -> _Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


@dataclass
class _Setup:
    """A ``ManagerWire`` being set up: its deadlines, and whether the peer has passed a
    handshake yet (once it has, silence means a harvester that stalls, not a stranger).

    Setting up opens several connections one after the other (the manager's, one per
    proxy, its reference counts), each with its handshake: about 30 round trips in all,
    12 s on a 400 ms path. So each connection has its own ``seconds`` (from its start,
    through its handshake and its request), and the whole setup ``SETUP_STEPS`` times as
    long: a far harvester connects, a silent or stalling one is still found out within
    ``seconds``.
    """

    seconds: float
    deadline: _Deadline  # of the whole setup
    step: _Deadline | None = None  # of the connection being opened
    answered: bool = False

    @classmethod
    def within(cls, seconds: float) -> _Setup:
        return cls(seconds, _Deadline.after(seconds * SETUP_STEPS))

    def next_step(self) -> _Deadline:
        """The deadline of a new connection, from now (never past the whole setup's)."""
        step = _Deadline.after(self.seconds)
        self.step = step if step.at < self.deadline.at else self.deadline
        return self.step

    def current(self) -> _Deadline:
        return self.step or self.deadline


def _deadline_of(own: _Deadline | None) -> _Deadline | None:
    """What a read waits until: a connection's own deadline (its key handshake), else
    the setup's under way in this thread or greenlet, else nothing."""
    setup = _current_setup.get()
    return own or (setup.current() if setup else None)


class _DeadlinePassed(Exception):
    """A read waited past the handshake's deadline."""


# The setup under way in this thread or greenlet: every read on the connections it
# opens stops at its deadline.
_current_setup: ContextVar[_Setup | None] = ContextVar("current_setup", default=None)


class _BoundedConnection(RawIOConnection):
    """A ``Connection`` whose reads stop at a deadline while there is one: its own
    (``deadline``, during the key handshake) or the setup's; else they wait for ever.

    Writes are not bounded: the handshake's messages are a few dozen bytes, which the
    kernel's buffer takes at once.
    """

    deadline: _Deadline | None = None
    _read = staticmethod(os.read)

    def read_raw(self, handle: int, size: int) -> bytes:
        deadline = _deadline_of(self.deadline)
        if deadline is None:
            return self._read(handle, size)
        remaining = deadline.remaining()
        if remaining <= 0:
            raise _DeadlinePassed
        return self._read_within(handle, size, remaining)

    @staticmethod
    def _read_within(handle: int, size: int, seconds: float) -> bytes:
        poller = select.poll()
        poller.register(handle, select.POLLIN)
        if not poller.poll(math.ceil(seconds * 1000)):
            raise _DeadlinePassed
        return os.read(handle, size)


@functools.cache
def _cooperative_connection_class() -> type[_BoundedConnection]:
    import gevent
    import gevent.os

    class CooperativeConnection(_BoundedConnection):
        _read = staticmethod(gevent.os.nb_read)

        def write_raw(self, handle: int, data: bytes) -> int:
            return gevent.os.nb_write(handle, data)

        @staticmethod
        def _read_within(handle: int, size: int, seconds: float) -> bytes:
            with gevent.Timeout(seconds, _DeadlinePassed):
                return gevent.os.nb_read(handle, size)

    return CooperativeConnection


class _BoundedTlsConnection(SocketConnection):
    """A ``Connection`` over a TLS socket whose reads stop at a deadline while there
    is one, as ``_BoundedConnection``'s do. Under gevent the socket is gevent's, so its
    reads and writes wait on the hub by themselves."""

    deadline: _Deadline | None = None
    _timed = False

    def _bound(self) -> None:
        deadline = _deadline_of(self.deadline)
        if deadline is None:
            if self._timed:
                self.sock.settimeout(None)
                self._timed = False
            return
        remaining = deadline.remaining()
        if remaining <= 0:
            raise _DeadlinePassed
        self.sock.settimeout(remaining)
        self._timed = True

    def read_raw(self, handle: int, size: int) -> bytes:
        self._bound()
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise _DeadlinePassed from None

    def write_raw(self, handle: int, data: bytes) -> int:
        self._bound()
        return self.sock.send(data)


def _where(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


class TlsAddress(tuple):
    """A harvester's ``(host, port)`` that carries the TLS context to reach it with.

    The manager hands its address to ``_client`` for every connection its proxies
    open (one per thread or greenlet), so the address is where the context travels.
    """

    context: Any

    def __new__(cls, address: tuple[str, int], context: Any) -> TlsAddress:
        made = super().__new__(cls, address)
        made.context = context
        return made


def _client(address: tuple[str, int], authkey: bytes | None = None) -> SerializingConnection:
    """Open an authenticated, JSON-speaking connection to a manager (in TLS for a
    ``TlsAddress``).

    Connecting, TLS and the key handshake both ways end by a deadline:
    ``HANDSHAKE_TIMEOUT`` from now, or the one ``ManagerWire`` is being set up by.
    Raises ``NotAHarvester`` for a peer that answers otherwise than a manager (or, at a
    setup's first contact, not at all), ``AuthKeyError`` for a harvester with another
    key, ``TlsError`` for a certificate either side refuses, and ``OSError``/``EOFError``
    for the network's failures and a harvester that stalls.
    """
    setup = _current_setup.get()
    deadline = setup.next_step() if setup else _Deadline.after(HANDSHAKE_TIMEOUT)
    if deadline.remaining() <= 0:
        raise _DeadlinePassed
    where = _where(address)
    first_contact = bool(setup and not setup.answered)
    tls = getattr(address, "context", None)
    sock = socket.create_connection(address, timeout=max(deadline.remaining(), 0.001))
    try:
        detect_dead_peers(sock)
        if tls is not None:
            sock = _tls_handshake(sock, tls, address[0], where, deadline, first_contact)
        elif authkey is not None:
            _check_greeting(sock, where, deadline, first_contact)
        if tls is None:
            sock.settimeout(None)  # blocking again: the Connection reads the descriptor
    except BaseException:
        sock.close()
        raise
    connection: _BoundedConnection | _BoundedTlsConnection
    if tls is not None:
        connection = _BoundedTlsConnection(sock)
    elif _gevent_patched():
        connection = _cooperative_connection_class()(sock.detach())
    else:
        connection = _BoundedConnection(sock.detach())
    try:
        if authkey is not None:
            connection.deadline = deadline
            _answer_and_ask(connection, authkey, where, deadline)
            connection.deadline = None  # downloaders keep connections idle for the whole crawl
    except ssl.SSLError as exc:  # TLS 1.3: a refused certificate shows at the first read
        connection.close()
        raise handshake_error(exc, where) from None
    except BaseException:
        connection.close()
        raise
    if setup:
        setup.answered = True
    return json_connection(connection)


def json_connection(
    connection: Any, loads: Callable[[bytes], Any] = _json_loads
) -> SerializingConnection:
    """The connection, sending JSON data and receiving what ``loads`` makes of each
    message (JSON data; the server's checks requests too, ``messages.py``)."""
    return with_serializer(connection, _json_dumps, loads)


def _tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    host: str,
    where: str,
    deadline: _Deadline,
    first_contact: bool,
) -> ssl.SSLSocket:
    """``sock`` in TLS, the harvester's certificate checked for ``host``."""
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        tls.settimeout(max(deadline.remaining(), 0.001))
        tls.do_handshake()
    except TimeoutError:
        tls.close()
        if not first_contact:
            raise TimeoutError(f"no TLS handshake within {deadline.seconds:g} s") from None
        raise NotAHarvester(
            f"{where} did not answer a TLS handshake within {deadline.seconds:g} s: "
            "is it a crawler harvester started with --tls-cert?"
        ) from None
    except ssl.SSLError as exc:
        tls.close()
        raise handshake_error(exc, where) from None
    except BaseException:
        tls.close()
        raise
    return tls


def _check_greeting(
    sock: socket.socket, where: str, deadline: _Deadline, first_contact: bool
) -> None:
    """Peek at the peer's first bytes: a manager speaks first, with its challenge."""
    sock.settimeout(max(deadline.remaining(), 0.001))
    try:
        greeting = sock.recv(GREETING_BYTES, socket.MSG_PEEK)
    except TimeoutError:
        if not first_contact:
            raise TimeoutError(f"no challenge within {deadline.seconds:g} s") from None
        raise NotAHarvester(
            f"{where} did not answer the crawler handshake within {deadline.seconds:g} s: "
            "is it a crawler harvester (crawler harvest --listen ...)? One started with "
            "--tls-cert needs --tls-ca here"
        ) from None
    if not greeting:
        raise EOFError("closed the connection before the handshake")
    if not starts_like_a_challenge(greeting):
        shown = repr(greeting)[1:]  # b'...' without the b: one line, control bytes escaped
        raise NotAHarvester(f"{where} is not a crawler harvester (it answered {shown})")


def _answer_and_ask(
    connection: RawIOConnection, authkey: bytes, where: str, deadline: _Deadline
) -> None:
    """The manager's HMAC handshake both ways, its failures named for the user."""
    try:
        client_handshake(connection, authkey)
    except AuthenticationError:
        raise AuthKeyError(
            f"the harvester at {where} rejected our authkey: "
            "every node needs the same key (CRAWLER_AUTHKEY or --authkey-file)"
        ) from None
    except NotAChallenge:  # what followed a plausible start was not a challenge
        raise NotAHarvester(f"{where} is not a crawler harvester (a broken challenge)") from None
    except _DeadlinePassed:
        raise TimeoutError(f"handshake stalled: no answer within {deadline.seconds:g} s") from None


class _DeepQueueListener(Listener):
    """The server's listener, with a longer accept queue; ``accept`` gives the plain
    connection, on which the server runs TLS and the key handshake before it speaks
    JSON (``json_connection``).

    The manager's server asks for 16; a burst of connections beyond that makes the kernel
    drop connection attempts, and each real client caught in it waits 1 s or more.
    """

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        super().__init__(address, family, max(backlog, LISTEN_BACKLOG))


register_serializer(SERIALIZER, _DeepQueueListener, _client)


class TaskQueueProxy(BaseProxy):
    _exposed_ = TASK_QUEUE_METHODS

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        return self._callmethod("join", (node, info))

    def lease_batch(self, node: str, limit: int, wait: float) -> dict[str, Any]:
        return self._callmethod("lease_batch", (node, limit, wait))

    def extend_leases(self, node: str, ids: list[int]) -> bool:
        return self._callmethod("extend_leases", (node, ids))

    def leave(self, node: str) -> bool:
        return self._callmethod("leave", (node,))

    def status(self) -> dict[str, Any]:
        return self._callmethod("status", ())


class ResultQueueProxy(BaseProxy):
    _exposed_ = RESULT_QUEUE_METHODS

    def report_results(self, node: str, results: list[dict[str, Any]]) -> int:
        return self._callmethod("report_results", (node, results))


class _ClientManager(BaseManager):
    pass


_ClientManager.register("get_task_queue", proxytype=TaskQueueProxy)
_ClientManager.register("get_result_queue", proxytype=ResultQueueProxy)


class ManagerWire:
    """The manager's wire as ``wire.base.RawWire``: the harvester's proxies, the calls'
    data in wire form, the errors mapped.

    Raises ``BrokerUnavailable`` for every network failure (worth a retry),
    ``CallFailed`` when the harvester failed to take a call (an exception on its side),
    ``AuthKeyError`` for another key, ``TlsError`` for a certificate either side refuses
    and ``NotAHarvester`` for a peer that is no harvester (all final). Each connection
    the setup opens (connecting, its handshake, its request for the proxies) ends within
    ``handshake_timeout`` seconds, the whole setup within ``SETUP_STEPS`` times that
    (``_Setup``); calls afterwards wait as long as the harvester takes. With ``tls``
    (``tls.client_context``) every connection is TLS, the harvester's certificate
    checked for the host connected to.
    """

    def __init__(
        self,
        address: tuple[str, int],
        authkey: bytes,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        reach = TlsAddress(address, tls) if tls is not None else address
        self._manager = _ClientManager(address=reach, authkey=authkey, serializer=SERIALIZER)
        setup = _current_setup.set(_Setup.within(handshake_timeout))
        try:
            self._manager.connect()
            self._tasks: TaskQueueProxy = self._manager.get_task_queue()
            self._results: ResultQueueProxy = self._manager.get_result_queue()
            # The proxies' decref at exit waited for ever on a harvester that hangs (a
            # node stopped with SIGTERM then never exited); the harvester serves the
            # same two objects to every node for the whole crawl: nothing to free.
            never_decref(self._tasks, self._results)
        except _DeadlinePassed:
            raise BrokerUnavailable(
                f"harvester at {self.where} did not finish connecting within "
                f"{handshake_timeout:g} s"
            ) from None
        except TRANSIENT_ERRORS as exc:
            raise BrokerUnavailable(
                f"harvester at {self.where} is not reachable: {str(exc) or type(exc).__name__}"
            ) from exc
        finally:
            _current_setup.reset(setup)

    @property
    def where(self) -> str:
        return _where(self.address)

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except TRANSIENT_ERRORS as exc:
            self._drop_connection()
            raise BrokerUnavailable(f"lost the harvester at {self.where}: {exc!r}") from exc
        except RemoteError as exc:  # the harvester's side raised: it kept nothing of the call
            raise CallFailed(_last_line(exc)) from None

    def _drop_connection(self) -> None:
        """Forget this thread's (greenlet's) broken connection to the harvester.

        Proxies cache one connection per address and thread in state shared by every
        proxy of that address, so a new client would otherwise reuse the dead socket
        after the harvester restarts.
        """
        forget_thread_connection(self._tasks)

    def join(self, node: str, info: dict[str, Any]) -> dict[str, Any]:
        return self._call(self._tasks.join, node, info)

    def lease_batch(self, node: str, limit: int, wait: float = 1.0) -> dict[str, Any]:
        return self._call(self._tasks.lease_batch, node, limit, wait)

    def extend_leases(self, node: str, ids: list[int]) -> bool:
        return self._call(self._tasks.extend_leases, node, ids)

    def report_results(self, node: str, results: list[dict[str, Any]]) -> int:
        return self._call(self._results.report_results, node, results)

    def leave(self, node: str) -> bool:
        return self._call(self._tasks.leave, node)

    def status(self) -> dict[str, Any]:
        """The harvester's figures, nodes and per-host state (``Broker.status``)."""
        return self._call(self._tasks.status)

    def close(self) -> None:
        """Close this thread's (greenlet's) connection to the harvester."""
        self._drop_connection()


def _last_line(exc: BaseException) -> str:
    """The last line of a remote traceback: the error, without the stack."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip(" -")]
    return (lines[-1] if lines else type(exc).__name__)[:200]
