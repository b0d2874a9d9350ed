"""The internals of ``multiprocessing.connection`` and ``multiprocessing.managers`` we use.

The wire (``crawler.wire``) is a manager over TCP with a JSON serializer, a bounded key
handshake, gevent-cooperative reads and a server hardened against hostile peers. The
documented API offers none of these, so this module touches the following internals;
nothing else in the crawler does. Each name: what it is, what we use it for, and why
there is no public way.

``multiprocessing.connection``

* ``Connection._recv`` and ``Connection._send``: the loops that read and write the
  descriptor with ``os.read``/``os.write``, given as their default arguments. Overridden
  (``RawIOConnection``) to pass our own read and write: reads that stop at a deadline,
  and ``gevent.os`` for a gevent socket, where ``os.read`` fails with EAGAIN. The
  public ``Connection`` has no timeout and no way to choose how it does I/O.
* ``Connection._close``: how a connection closes its descriptor (``os.close``).
  Overridden (``SocketConnection``) so that a connection over a TLS socket closes the
  socket object, whose reads and writes it makes: the public ``Connection`` takes only
  a descriptor and reads it raw, which would bypass TLS.
* ``Connection(handle)``: building a connection from a descriptor we connected
  ourselves (with ``TCP_NODELAY``, a connect deadline and a peek at the greeting);
  ``Client`` connects for us and offers none of that.
* ``ConnectionWrapper``: an undocumented class that gives a connection another
  serializer; the managers use it for ``xmlrpclib``, we for JSON (``with_serializer``).
* ``answer_challenge`` and ``deliver_challenge``: the two halves of the HMAC key
  handshake, undocumented. ``Client(authkey=...)`` and the manager's server run them
  with no time bound, so we run them ourselves (``client_handshake``,
  ``server_handshake``). A message that is no challenge fails an ``assert`` in
  ``answer_challenge`` (Python 3.11); we turn that into ``NotAChallenge``.
* ``CHALLENGE``: the undocumented prefix of the challenge message, and the 256 bytes
  ``answer_challenge`` reads at most; ``starts_like_a_challenge`` tells a manager's
  greeting from another server's by them.

``multiprocessing.managers``

* ``listener_client``: the undocumented table from serializer name to the (listener,
  client) pair a manager and its proxies use. ``BaseManager(serializer=...)`` takes only
  the names in it, so adding ours (``register_serializer``) is the only way to plug in
  another serializer or listener.
* ``Server``: the undocumented server behind ``BaseManager.get_server()``. We build it
  from ``BaseManager._registry`` (the class's registered types, private) and drive it
  from outside (``ManagerServer``): our own accept loop reads ``Server.listener``, and
  ``Server.stop_event`` (set by ``serve_forever``, which we do not use) stops its
  connection loops. ``answer_requests`` is a copy of ``Server._handle_request`` after
  its handshake, which runs without a time bound there, with no hook between the two;
  it calls the methods named in ``Server.public``, and a connection's loop
  (``Server.serve_client``) ends with ``SystemExit`` when the client hangs up.
* ``BaseProxy._close``: the finalizer each proxy registers to decref its referent from
  a new connection at exit; ``never_decref`` cancels it. There is no option to skip it.
* ``BaseProxy._tls``: the thread-local holding each thread's connection, shared by all
  proxies of one address through ``BaseProxy._address_to_local``;
  ``forget_thread_connection`` drops a dead one. Proxies never let go of a broken
  connection by themselves.

Not internals, though their names start with an underscore: ``BaseProxy._callmethod``
and ``_exposed_`` are the documented way to write a proxy type.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import (
    CHALLENGE,
    Connection,
    ConnectionWrapper,
    answer_challenge,
    deliver_challenge,
)
from multiprocessing.managers import BaseManager, BaseProxy, Server, listener_client
from traceback import format_exc
from typing import Any

SerializingConnection = ConnectionWrapper
MAX_CHALLENGE_LENGTH = 256  # what answer_challenge reads at most


class RawIOConnection(Connection):
    """A ``Connection`` that reads and writes its descriptor with ``read_raw`` and
    ``write_raw``: ``os.read`` and ``os.write`` unless a subclass overrides them."""

    def read_raw(self, handle: int, size: int) -> bytes:
        return os.read(handle, size)

    def write_raw(self, handle: int, data: bytes) -> int:
        return os.write(handle, data)

    def _recv(self, size: int, read: Any = None) -> Any:
        return super()._recv(size, self.read_raw)  # type: ignore[misc]

    def _send(self, buf: bytes, write: Any = None) -> None:
        super()._send(buf, self.write_raw)  # type: ignore[misc]


class SocketConnection(RawIOConnection):
    """A ``Connection`` whose bytes go through a socket object (an ``ssl.SSLSocket``)
    rather than its descriptor; closing it closes the socket."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        super().__init__(sock.fileno())

    def read_raw(self, handle: int, size: int) -> bytes:
        return self.sock.recv(size)

    def write_raw(self, handle: int, data: bytes) -> int:
        return self.sock.send(data)

    def _close(self, _close: Any = None) -> None:
        self.sock.close()


def with_serializer(
    connection: Connection, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]
) -> SerializingConnection:
    """The connection, sending ``dumps(obj)`` and receiving ``loads(bytes)`` objects."""
    return ConnectionWrapper(connection, dumps, loads)


def register_serializer(name: str, listener_class: type, client: Callable[..., Any]) -> None:
    """Let managers and their proxies take ``serializer=name``.

    The server builds ``listener_class(address=..., backlog=16)`` and serves what its
    ``accept()`` returns; proxies and ``BaseManager.connect`` call
    ``client(address, authkey=...)`` for each new connection. A name already taken
    keeps its first pair.
    """
    listener_client.setdefault(name, (listener_class, client))


class NotAChallenge(Exception):
    """The peer's first message was not a manager's challenge."""


def client_handshake(connection: Connection, authkey: bytes) -> None:
    """The client's side of the HMAC key handshake: answer, then ask.

    Raises ``AuthenticationError`` for another key, ``NotAChallenge`` for a peer that
    does not speak it, and whatever the connection's reads raise.
    """
    try:
        answer_challenge(connection, authkey)
    except AssertionError:
        raise NotAChallenge("the peer's message is not a challenge") from None
    deliver_challenge(connection, authkey)


def server_handshake(connection: Connection, authkey: bytes) -> None:
    """The server's side of the HMAC key handshake: ask, then answer; errors as
    ``client_handshake``'s."""
    deliver_challenge(connection, authkey)
    try:
        answer_challenge(connection, authkey)
    except AssertionError:
        raise NotAChallenge("the peer's message is not a challenge") from None


def starts_like_a_challenge(greeting: bytes) -> bool:
    """Whether a peer's first bytes can begin a manager's challenge message: a length
    that ``answer_challenge`` accepts, then ``#CHALLENGE#`` (as far as they go)."""
    header, body = greeting[:4], greeting[4 : 4 + len(CHALLENGE)]
    smallest_length = int.from_bytes(header.ljust(4, b"\0"), "big", signed=True)
    if len(header) == 4 and smallest_length < len(CHALLENGE):
        return False
    return 0 <= smallest_length <= MAX_CHALLENGE_LENGTH and CHALLENGE.startswith(body)


def never_decref(*proxies: BaseProxy) -> None:
    """Cancel the finalizer each proxy registers to tell the server, from a new
    connection, that it is gone (at collection or exit)."""
    for proxy in proxies:
        finalizer = getattr(proxy, "_close", None)
        if finalizer is not None:
            finalizer.cancel()


def forget_thread_connection(proxy: BaseProxy) -> None:
    """Close and forget this thread's connection to the proxy's manager, for every
    proxy of that address: the next call opens a new one."""
    local = getattr(proxy, "_tls", None)
    connection = getattr(local, "connection", None)
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.close()
        del local.connection


class ManagerServer:
    """A manager's server for the types registered on ``manager_class``, driven from
    outside: the caller accepts connections, runs the handshake, then hands each
    authenticated connection to ``answer_requests``.

    Listens on ``address`` at once (``OSError`` if it cannot); ``address`` is then the
    one bound.
    """

    def __init__(
        self, manager_class: type[BaseManager], address: Any, authkey: bytes, serializer: str
    ) -> None:
        self._server = Server(manager_class._registry, address, authkey, serializer)  # type: ignore[attr-defined]
        self._server.stop_event = threading.Event()
        self.address = self._server.address

    def accept(self) -> Any:
        """The next connection from the listener; ``OSError`` if accepting failed."""
        return self._server.listener.accept()

    def answer_requests(self, connection: Any) -> None:
        """Serve an authenticated connection until the client hangs up or ``stop``."""
        with contextlib.suppress(SystemExit):  # how serve_client ends at the client's EOF
            self._answer_first_request(connection)

    def _answer_first_request(self, c: Any) -> None:
        # Server._handle_request after its handshake: a new connection's first request
        # (accept_connection, create, incref, ...) then, for accept_connection, its loop.
        server = self._server
        try:
            _ident, funcname, args, kwds = c.recv()
            if funcname not in server.public:
                raise ValueError(f"{funcname!r} unrecognized")
            msg = ("#RETURN", getattr(server, funcname)(c, *args, **kwds))
        except Exception:
            msg = ("#TRACEBACK", format_exc())
        try:
            c.send(msg)
        except Exception:
            with contextlib.suppress(Exception):  # the peer may be gone already
                c.send(("#TRACEBACK", format_exc()))

    def stop(self) -> None:
        """Stop listening; each connection's loop ends after its next request."""
        self._server.stop_event.set()
        self._server.listener.close()
