"""The multiprocessing internals in crawler.compat.multiprocessing, on real sockets."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import AuthenticationError
from multiprocessing.managers import BaseManager
from typing import Any

import pytest

from crawler.compat.multiprocessing import (
    ManagerServer,
    NotAChallenge,
    RawIOConnection,
    client_handshake,
    forget_thread_connection,
    never_decref,
    server_handshake,
    with_serializer,
)

KEY = b"compat-test-key"


def connection_pair() -> tuple[RawIOConnection, RawIOConnection]:
    left, right = socket.socketpair()
    return RawIOConnection(left.detach()), RawIOConnection(right.detach())


def in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``function`` in a thread; the returned callable waits and gives its outcome."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(5)
        return outcome[0]

    return result


class CountingConnection(RawIOConnection):
    reads = writes = 0

    def read_raw(self, handle: int, size: int) -> bytes:
        self.reads += 1
        return super().read_raw(handle, size)

    def write_raw(self, handle: int, data: bytes) -> int:
        self.writes += 1
        return super().write_raw(handle, data)


def test_a_raw_io_connection_reads_and_writes_through_its_methods() -> None:
    left, right = socket.socketpair()
    ours, theirs = CountingConnection(left.detach()), RawIOConnection(right.detach())
    ours.send_bytes(b"ping")
    assert theirs.recv_bytes() == b"ping"
    theirs.send_bytes(b"pong" * 1000)
    assert ours.recv_bytes() == b"pong" * 1000
    assert ours.writes >= 1 and ours.reads >= 2  # a length header, then the body
    ours.close()
    theirs.close()


def test_with_serializer_sends_and_receives_objects() -> None:
    left, right = connection_pair()
    sender = with_serializer(left, lambda obj: json.dumps(obj).encode(), json.loads)
    receiver = with_serializer(right, lambda obj: json.dumps(obj).encode(), json.loads)
    sender.send({"tasks": [[1, "http://a.example/"]]})
    assert receiver.recv() == {"tasks": [[1, "http://a.example/"]]}
    assert right.poll() is False
    sender.close()
    receiver.close()


def test_the_handshakes_pass_with_the_same_key() -> None:
    client, server = connection_pair()
    served = in_thread(lambda: server_handshake(server, KEY))
    client_handshake(client, KEY)
    assert served() is None


def test_another_key_fails_on_both_sides() -> None:
    client, server = connection_pair()
    served = in_thread(lambda: server_handshake(server, KEY))
    with pytest.raises(AuthenticationError):
        client_handshake(client, b"another key")
    assert isinstance(served(), AuthenticationError)


def test_a_message_that_is_no_challenge_is_named_so() -> None:
    client, server = connection_pair()
    server.send_bytes(b"GET / HTTP/1.0")
    with pytest.raises(NotAChallenge):
        client_handshake(client, KEY)


class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total


class CounterManager(BaseManager):
    pass


_counter = Counter()
CounterManager.register("get_counter", callable=lambda: _counter, exposed=("add",))


class Served:
    """A ManagerServer driven the way the harvester's server drives it, counting the
    connections it accepted."""

    def __init__(self) -> None:
        self.server = ManagerServer(CounterManager, ("127.0.0.1", 0), KEY, "pickle")
        self.accepted = 0
        self._stopping = False
        threading.Thread(target=self._accept_connections, daemon=True).start()

    def _accept_connections(self) -> None:
        while not self._stopping:
            try:
                connection = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Any) -> None:
        with contextlib.closing(connection):
            server_handshake(connection, KEY)
            self.server.answer_requests(connection)

    def client(self) -> CounterManager:
        manager = CounterManager(address=self.server.address, authkey=KEY, serializer="pickle")
        manager.connect()
        return manager

    def stop(self) -> None:
        self._stopping = True
        self.server.stop()


@pytest.fixture
def served() -> Iterator[Served]:
    served = Served()
    yield served
    served.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_manager_server_serves_a_stock_manager_client(served: Served) -> None:
    counter = served.client().get_counter()
    total = counter.add(2)
    assert counter.add(3) == total + 3 == _counter.total


def test_forgetting_the_thread_connection_makes_the_next_call_reconnect(served: Served) -> None:
    counter = served.client().get_counter()
    counter.add(0)
    before = served.accepted
    counter.add(0)
    assert served.accepted == before  # the thread's connection is reused
    forget_thread_connection(counter)
    counter.add(0)
    assert served.accepted == before + 1


def test_a_proxy_collected_tells_the_server_unless_never_decref(served: Served) -> None:
    manager = served.client()
    counter = manager.get_counter()
    before = served.accepted
    del counter
    gc.collect()
    assert wait_for(lambda: served.accepted == before + 1), "no decref connection"

    counter = manager.get_counter()
    never_decref(counter)
    before = served.accepted
    del counter
    gc.collect()
    assert not wait_for(lambda: served.accepted > before, seconds=0.3)
