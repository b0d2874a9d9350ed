"""The internals of ``gevent`` we use.

* ``gevent.socket.socket._sock``: the plain socket a gevent socket wraps (gevent's
  socket holds one rather than being one). ``wrapped_socket`` returns it, so that
  ``crawler.web.safehttp`` can peek at a pooled connection without waiting: gevent's
  own ``recv`` waits on the hub whenever the call would block, ``MSG_DONTWAIT`` or not,
  and setting the gevent socket's timeout to 0 for the peek would change its state.
  There is no public accessor.
* ``_socket.socket``: CPython's plain socket type, which ``socket.socket`` and the
  socket gevent wraps both derive from, to tell a gevent socket from anything else
  that has a ``_sock``.
  ``socket.SocketType`` is the same object but is documented as ``type(socket())``,
  which it is not.

The rest of gevent the crawler uses is public: ``gevent.os.nb_read`` and
``nb_write``, ``Timeout``, ``monkey``, the hub's thread pool, pools, queues and locks.
"""

from __future__ import annotations

import _socket


def wrapped_socket(sock: object) -> _socket.socket | None:
    """The plain socket a gevent socket wraps; None for any other socket."""
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, _socket.socket) else None
