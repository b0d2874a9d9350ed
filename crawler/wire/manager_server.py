"""The harvester's side of the wire: serve one Broker to downloader nodes.

The port is open to anyone who can reach it, so the server holds out against peers
without the key (``ServerLimits``): the handshake is time-bounded, failures become
throttled ``auth_failed`` events in the progress log, and connection threads are capped.
Peers with the key are held to the requests of ``messages.py``: a bad one closes that
connection, with a throttled ``bad_message`` event.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.managers import BaseManager
from typing import Any

from crawler.broker.broker import Broker
from crawler.compat.multiprocessing import ManagerServer, SocketConnection, server_handshake
from crawler.config import QueueConfig
from crawler.errors import ConfigError
from crawler.wire.manager_client import (
    RESULT_QUEUE_METHODS,
    SERIALIZER,
    TASK_QUEUE_METHODS,
    detect_dead_peers,
    json_connection,
)
from crawler.wire.messages import RequestChecker


def _nodelay_socket(connection: Any) -> socket.socket:
    """A duplicate of the connection's socket, with TCP_NODELAY and the dead-peer
    bounds (``detect_dead_peers``) set on the shared socket.

    The duplicate keeps the socket alive until we close it, so shutting it down can
    never hit an unrelated socket that reused a closed descriptor number.
    """
    sock = socket.socket(fileno=os.dup(connection.fileno()))
    detect_dead_peers(sock)
    return sock


class TaskQueue:
    """What downloaders may call on the task side; a separate object from the result
    side because the manager keys served objects by identity, one exposed list each."""

    def __init__(self, broker: Broker) -> None:
        self.join = broker.join
        self.lease_batch = broker.lease_batch
        self.extend_leases = broker.extend_leases
        self.leave = broker.leave
        self.status = broker.status


class ResultQueue:
    """What downloaders may call on the result side."""

    def __init__(self, broker: Broker) -> None:
        self.report_results = broker.report_results


@dataclass(frozen=True)
class ServerLimits:
    """How the harvester's server holds out against clients that are not downloaders.

    ``handshake_timeout``: seconds a peer has for each read and write of the key
    handshake; an authenticated connection may then idle as long as it likes.
    ``max_connections``: connection threads at most. ``event_interval``: at most one
    ``auth_failed`` event per peer address, and one ``connection_limit`` event, per interval.
    """

    handshake_timeout: float
    max_connections: int
    event_interval: float = 10.0

    @classmethod
    def from_config(cls, queue: QueueConfig) -> ServerLimits:
        """The limits of ``queue.handshake_timeout`` and ``queue.max_connections``."""
        return cls(queue.handshake_timeout, queue.max_connections)


@dataclass
class EventThrottle:
    """At most one event per key every ``interval`` seconds, counting the ones held back.

    Not thread-safe; the caller passes ``now``. Once there are ``max_keys`` keys, those
    whose interval has passed are forgotten (with their count), so that many peers
    cannot fill memory.
    """

    interval: float
    max_keys: int = 4096
    last: dict[Hashable, float] = field(default_factory=dict)
    held_back: dict[Hashable, int] = field(default_factory=dict)

    def admit(self, key: Hashable, now: float) -> int | None:
        """None: drop this event. Else: emit it, with the number dropped since the last."""
        last = self.last.get(key)
        if last is not None and now - last < self.interval:
            self.held_back[key] = self.held_back.get(key, 0) + 1
            return None
        if last is None and len(self.last) >= self.max_keys:
            self._forget_quiet_keys(now)
        self.last[key] = now
        return self.held_back.pop(key, 0)

    def _forget_quiet_keys(self, now: float) -> None:
        for key in [k for k, last in self.last.items() if now - last >= self.interval]:
            del self.last[key]
            self.held_back.pop(key, None)


def handshake_failure(exc: BaseException) -> str:
    """Why a peer failed TLS or the key handshake, in words fit for the log (never the
    key): ``wrong key``, ``timeout``, ``closed``, ``tls: <reason>``, ``protocol error``."""
    if isinstance(exc, AuthenticationError):
        return "wrong key"
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
        reason = exc.reason or type(exc).__name__
        return f"tls: {reason.lower().replace('_', ' ')}"
    if isinstance(exc, BlockingIOError | TimeoutError):
        return "timeout"  # SO_RCVTIMEO ran out: os.read fails with EAGAIN
    if isinstance(exc, EOFError | ConnectionError | ssl.SSLEOFError):
        return "closed"
    return "protocol error"  # garbage: a message too long, not a challenge, cut short


def _peer_text(address: Any) -> tuple[str, str]:
    """(host, "host:port") of an accepted TCP peer; IPv6 hosts get brackets."""
    host, port = address[:2]
    return host, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking read and write on the socket; 0 waits forever.

    Socket options rather than ``settimeout``: ``settimeout`` makes the file description,
    shared with the Connection's own descriptor, non-blocking, and the Connection's
    ``os.read`` would then fail with EAGAIN at once.
    """
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class _GuardedServer:
    """The manager's server, hardened against hostile peers, with TCP_NODELAY and a clean stop.

    * TLS (with ``tls``, a ``tls.server_context``) and then the key handshake run in
      the connection's thread with a time bound, so a peer that connects and says
      nothing is dropped; a failure becomes an ``auth_failed`` event (throttled per
      peer address).
    * At most ``max_connections`` connection threads. At the limit the oldest connection
      still in its handshake makes room (a downloader answers in milliseconds, so a
      flood of idle connections cannot lock it out); if none is, the new one is closed.
    * Stopping cuts the open connections too: a connection's thread checks the stop
      flag only after answering one more request, and then its exit sends a stray
      ``None`` that the client takes as the answer to its next call.
    """

    closing = False

    def __init__(
        self,
        manager_class: type[BaseManager],
        address: tuple[str, int],
        authkey: bytes,
        limits: ServerLimits,
        note_event: Callable[[str, dict[str, Any]], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._manager = ManagerServer(manager_class, address, authkey, SERIALIZER)
        self._tls = tls
        self.address: tuple[str, int] = self._manager.address
        self._authkey = authkey
        self.limits = limits
        self._note_event = note_event
        self._throttle = EventThrottle(limits.event_interval)
        self._open_sockets: set[socket.socket] = set()
        self._in_handshake: dict[socket.socket, None] = {}  # insertion order: oldest first
        self._lock = threading.Lock()

    def accept_connections(self) -> None:
        while not self.closing:
            accepted = self._accept()
            if accepted is None:
                continue
            connection, sock, _host, peer = accepted
            if self._admit(sock, peer):
                name = f"connection {peer}"
                threading.Thread(target=self._serve, args=accepted, name=name, daemon=True).start()
            else:
                sock.close()
                connection.close()

    def _accept(self) -> tuple[Any, socket.socket, str, str] | None:
        """The next connection, its socket duplicate and its peer; None if that failed."""
        try:
            connection = self._manager.accept()
        except OSError:
            return None
        sock = None
        try:
            sock = _nodelay_socket(connection)
            return connection, sock, *_peer_text(sock.getpeername())
        except OSError:  # the peer is gone already, or we are out of descriptors
            if sock is not None:
                sock.close()
            connection.close()
            return None

    def _admit(self, sock: socket.socket, peer: str) -> bool:
        """Whether to serve a new connection; at the limit, an older one may make room."""
        with self._lock:
            if self.closing:
                return False
            at_limit = len(self._open_sockets) >= self.limits.max_connections
            admitted = not at_limit or self._drop_oldest_handshake()
            if admitted:
                self._open_sockets.add(sock)
                self._in_handshake[sock] = None
        if at_limit:
            dropped = "oldest_handshake" if admitted else "new_connection"
            fields = {"peer": peer, "limit": self.limits.max_connections, "dropped": dropped}
            self._note("connection_limit", "any peer", fields)
        return admitted

    def _drop_oldest_handshake(self) -> bool:
        """Cut the connection longest in its handshake (caller holds the lock)."""
        oldest = next(iter(self._in_handshake), None)
        if oldest is None:
            return False
        del self._in_handshake[oldest]
        self._open_sockets.discard(oldest)
        with contextlib.suppress(OSError):
            oldest.shutdown(socket.SHUT_RDWR)  # its thread wakes up and exits
        return True

    def _serve(self, connection: Any, sock: socket.socket, host: str, peer: str) -> None:
        try:
            connection = self._authenticate(connection, sock, host, peer)
            if connection is not None:
                checker = RequestChecker(lambda reason: self._bad_message(host, peer, reason))
                self._manager.answer_requests(json_connection(connection, checker))
        finally:
            with self._lock:
                self._open_sockets.discard(sock)
                self._in_handshake.pop(sock, None)
            if connection is not None:
                connection.close()
            sock.close()

    def _authenticate(self, connection: Any, sock: socket.socket, host: str, peer: str) -> Any:
        """TLS if configured, then the manager's HMAC handshake both ways, each read and
        write time-bounded. The connection to serve (over TLS, it is a new one), or None
        when the peer failed (the connection is closed then)."""
        try:
            if self._tls is not None:
                connection = self._tls_accept(connection)
                server_handshake(connection, self._authkey)
                connection.sock.settimeout(None)  # idle for the whole crawl from now on
            else:
                _set_io_timeout(sock, self.limits.handshake_timeout)
                server_handshake(connection, self._authkey)
                _set_io_timeout(sock, 0)  # downloaders keep connections idle for the whole crawl
        except Exception as exc:
            connection.close()
            with self._lock:
                # Not ours to report when we cut it: at the limit, or because we stop.
                cut_by_us = self.closing or sock not in self._in_handshake
            if not cut_by_us:
                self._note("auth_failed", host, {"peer": peer, "reason": handshake_failure(exc)})
            return None
        with self._lock:
            if sock not in self._in_handshake:
                connection.close()
                return None  # cut at the connection limit meanwhile
            del self._in_handshake[sock]
        return connection

    def _tls_accept(self, connection: Any) -> SocketConnection:
        """The server's TLS handshake on an accepted connection, within the handshake
        timeout; the plain connection is closed, the TLS one returned (its socket still
        bounded by the timeout, for the key handshake)."""
        assert self._tls is not None
        raw = socket.socket(fileno=os.dup(connection.fileno()))
        connection.close()
        try:
            raw.settimeout(self.limits.handshake_timeout)
            tls = self._tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        try:
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        return SocketConnection(tls)

    def _bad_message(self, host: str, peer: str, reason: str) -> None:
        """An authenticated peer sent a request we refuse: its connection closes."""
        self._note("bad_message", host, {"peer": peer, "reason": reason})

    def _note(self, name: str, per: str, fields: dict[str, Any]) -> None:
        """Record an event unless one of the same name and ``per`` was recorded lately."""
        with self._lock:
            held_back = self._throttle.admit((name, per), time.monotonic())
        if held_back is None:
            return
        if held_back:
            fields = {**fields, "suppressed": held_back}
        self._note_event(name, fields)

    def stop(self) -> None:
        with self._lock:
            self.closing = True
            open_sockets = list(self._open_sockets)
        self._manager.stop()
        for sock in open_sockets:
            with contextlib.suppress(OSError):  # the peer may be gone already
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it


class BrokerServer:
    """The harvester's side: serves one Broker on ``address`` until ``stop``, in TLS
    with ``tls`` (``tls.server_context``)."""

    def __init__(
        self,
        broker: Broker,
        address: tuple[str, int],
        authkey: bytes,
        limits: ServerLimits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        class ServingManager(BaseManager):
            pass

        task_queue, result_queue = TaskQueue(broker), ResultQueue(broker)
        ServingManager.register(
            "get_task_queue", callable=lambda: task_queue, exposed=TASK_QUEUE_METHODS
        )
        ServingManager.register(
            "get_result_queue", callable=lambda: result_queue, exposed=RESULT_QUEUE_METHODS
        )
        try:
            self._server = _GuardedServer(
                ServingManager,
                address,
                authkey,
                limits or ServerLimits.from_config(QueueConfig()),
                broker.note_event,
                tls,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            ) from None
        self.address: tuple[str, int] = self._server.address
        self.where = f"{self.address[0]}:{self.address[1]}"
        self._thread = threading.Thread(target=self._server.accept_connections, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and cut open connections: later calls raise BrokerUnavailable."""
        self._server.stop()
