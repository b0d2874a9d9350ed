"""The urllib3 internals in crawler.compat.urllib3."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from crawler.compat.urllib3 import NewSocketCheck, pool_is_closed, use_pool_classes


class Refused(Exception):
    pass


class RecordingCheck(NewSocketCheck):
    refuse = False
    checked: list[socket.socket]

    def check_new_socket(self, sock: socket.socket) -> None:
        self.checked = [*getattr(self, "checked", []), sock]
        if self.refuse:
            raise Refused(sock.getpeername())


@pytest.fixture
def listening() -> Iterator[tuple[str, int]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()


def test_each_new_socket_is_checked_before_use(listening: tuple[str, int]) -> None:
    connection_class = type("Checked", (RecordingCheck, HTTPConnection), {})
    connection = connection_class(*listening)
    connection.connect()
    assert [sock.getpeername() for sock in connection.checked] == [listening]
    assert connection.sock is connection.checked[0]
    connection.close()


def test_a_refused_socket_is_closed_and_the_error_is_the_connections(
    listening: tuple[str, int],
) -> None:
    connection_class = type("Refusing", (RecordingCheck, HTTPConnection), {"refuse": True})
    connection = connection_class(*listening)
    with pytest.raises(Refused):
        connection.connect()
    assert connection.checked[0].fileno() == -1
    assert connection.sock is None


def test_a_pool_manager_builds_the_pool_classes_it_is_given() -> None:
    plain = type("Plain", (HTTPConnectionPool,), {})
    secure = type("Secure", (HTTPSConnectionPool,), {})
    manager = PoolManager()
    use_pool_classes(manager, {"http": plain, "https": secure})
    assert type(manager.connection_from_url("http://images.example/")) is plain
    assert type(manager.connection_from_url("https://images.example/")) is secure


def test_a_closed_pool_is_told_from_an_open_one() -> None:
    pool = HTTPConnectionPool("images.example")
    assert not pool_is_closed(pool)
    pool.close()
    assert pool_is_closed(pool)
