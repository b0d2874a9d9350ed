"""The gevent internals in crawler.compat.gevent."""

from __future__ import annotations

import _socket
import socket

import gevent.socket

from crawler.compat.gevent import wrapped_socket


def test_a_gevent_socket_gives_the_plain_socket_it_wraps() -> None:
    ours, peer = gevent.socket.socketpair()
    raw = wrapped_socket(ours)
    assert isinstance(raw, _socket.socket)
    assert raw.fileno() == ours.fileno()
    ours.close()
    peer.close()


def test_other_sockets_give_none() -> None:
    ours, peer = socket.socketpair()
    assert wrapped_socket(ours) is None
    assert wrapped_socket(None) is None
    ours.close()
    peer.close()
