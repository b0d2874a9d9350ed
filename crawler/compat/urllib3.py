"""The internals of ``urllib3`` we use.

``crawler.web.safehttp`` checks the address every connection actually reached and
reuses pooled connections through its own connection classes. urllib3 offers neither,
so this module touches the following internals; nothing else in the crawler does.

* ``HTTPConnection._new_conn``: the private method that opens the socket (after the
  name lookup, before TLS and before any byte is sent). ``NewSocketCheck`` overrides
  it to run ``check_new_socket`` on each new socket. There is no public hook between
  connecting and using a socket: ``socket_options`` are set before the connect, and
  checking the names a resolver returns would not check the address connected to.
* ``PoolManager.pool_classes_by_scheme``: the undocumented map, per manager, from
  scheme to the pool class it builds; ``use_pool_classes`` replaces it, so that the
  manager's pools make our connections. ``PoolManager`` takes no pool classes, and
  ``PoolManager._new_pool``, which reads the map, is private.
* ``HTTPConnectionPool.pool``: the undocumented queue of idle connections, None once
  the pool is closed (by the manager's LRU, say); ``pool_is_closed`` reads it. No
  public method tells.

Public, though safehttp subclasses around them: ``HTTPConnectionPool.ConnectionCls``
and ``HTTPConnection.is_connected``.
"""

from __future__ import annotations

import socket
from typing import Any

from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool


class NewSocketCheck:
    """Mixed into a urllib3 connection class, before it: ``check_new_socket`` runs on
    each socket the connection opens, before it is used. If the check raises, the
    socket is closed and the exception is the connection's."""

    def check_new_socket(self, sock: socket.socket) -> None:
        """Raise to refuse the socket; subclasses override this."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            self.check_new_socket(sock)
        except BaseException:
            sock.close()
            raise
        return sock


def use_pool_classes(
    pool_manager: PoolManager, pool_classes: dict[str, type[HTTPConnectionPool]]
) -> None:
    """Make ``pool_manager`` build its pools for each scheme from ``pool_classes``
    (the keys are schemes: "http", "https")."""
    pool_manager.pool_classes_by_scheme = pool_classes  # type: ignore[assignment]


def pool_is_closed(pool: Any) -> bool:
    """Whether the connection pool was closed, so that it makes no more connections."""
    return pool.pool is None
