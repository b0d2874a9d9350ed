"""Tests for serving the broker over TCP: a real server and client on 127.0.0.1."""

from __future__ import annotations

import pickle
import socket
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import pytest

from crawler.broker import Broker
from crawler.errors import AuthKeyError, BrokerUnavailable
from crawler.transport import BrokerClient, BrokerServer

KEY = b"test-key-0123456789abcdef"
CALL_TIMEOUT = 5.0
UNICODE_URL = "http://bilder.example/größe/猫 & <co>.png?q=🐱"


@pytest.fixture
def broker() -> Broker:
    return Broker(lease_seconds=60.0, max_attempts=3, node_timeout=30.0)


@pytest.fixture
def server(broker: Broker) -> Iterator[BrokerServer]:
    server = BrokerServer(broker, ("127.0.0.1", 0), KEY)
    server.start()
    yield server
    server.stop()


def call_within(seconds: float, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` in a daemon thread; return its value or raise its exception.

    A network call that hangs fails the test instead of hanging the run.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function} did not return within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def connect(server: BrokerServer, key: bytes = KEY) -> BrokerClient:
    return call_within(CALL_TIMEOUT, BrokerClient, server.address, key)


def test_join_lease_and_report_round_trip_plain_data(broker: Broker, server: BrokerServer) -> None:
    broker.add_tasks([(UNICODE_URL, "http://bilder.example/", "img")])
    client = connect(server)
    result = {
        "id": 1,
        "url": UNICODE_URL,
        "node": "knoten-ü",
        "outcome": "stored",
        "status": 200,
        "bytes": 2**31 - 1,
        "sha256": "ab" * 32,
        "content_type": "image/png",
        "declared_type": None,
        "path": None,
        "width": 640,
        "height": None,
        "error": None,
        "retryable": False,
        "elapsed": 0.1 + 0.2,
    }

    joined = call_within(CALL_TIMEOUT, client.join, "knoten-ü", {"pid": 7, "host": None})
    leased = call_within(CALL_TIMEOUT, client.lease_batch, "knoten-ü", 10, 0)
    extended = call_within(CALL_TIMEOUT, client.extend_leases, "knoten-ü", [1])
    finished_count = call_within(CALL_TIMEOUT, client.report_results, "knoten-ü", [result])

    assert joined == {"lease_seconds": 60.0, "heartbeat_seconds": 10.0}
    assert leased == {"tasks": [[1, UNICODE_URL]], "done": False}
    assert extended is True
    assert finished_count == 1
    finished, events = broker.take_updates()
    assert [task.id for task in finished] == [1]
    assert finished[0].result == result
    assert type(finished[0].result["elapsed"]) is float
    assert events == [("node_joined", {"node": "knoten-ü", "pid": 7, "host": None})]


def test_leave_and_done_travel_back(broker: Broker, server: BrokerServer) -> None:
    client = connect(server)
    call_within(CALL_TIMEOUT, client.join, "n1", {})
    broker.take_updates()

    assert call_within(CALL_TIMEOUT, client.leave, "n1") is True
    assert broker.take_updates()[1] == [("node_left", {"node": "n1"})]

    broker.close()
    assert call_within(CALL_TIMEOUT, client.lease_batch, "n1", 5, 1.0) == {
        "tasks": [],
        "done": True,
    }


def test_wrong_authkey_is_an_authkey_error(server: BrokerServer) -> None:
    with pytest.raises(AuthKeyError, match="authkey"):
        connect(server, key=b"not-the-right-key-at-all")

    # The server shrugs the stranger off and keeps serving.
    assert call_within(CALL_TIMEOUT, connect(server).join, "n1", {})["lease_seconds"] == 60.0


def test_nothing_listening_is_broker_unavailable() -> None:
    # A bound socket that does not listen holds the port, so every connect is refused.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        with pytest.raises(BrokerUnavailable, match="not reachable"):
            call_within(CALL_TIMEOUT, BrokerClient, holder.getsockname(), KEY)


def test_calls_after_stop_are_broker_unavailable(broker: Broker) -> None:
    server = BrokerServer(broker, ("127.0.0.1", 0), KEY)
    server.start()
    broker.add_tasks([("http://a.test/1.png", "http://a.test/", "img")])

    def join_then_lease_after_stop() -> list[Any]:
        # One thread throughout: a proxy keeps one connection per thread, and it is the
        # connection opened before the stop that must not be served any more.
        client = BrokerClient(server.address, KEY)
        client.join("n1", {})
        server.stop()
        outcomes: list[Any] = []
        for _ in range(3):
            try:
                outcomes.append(client.lease_batch("n1", 5, 0))
            except BrokerUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    outcomes = call_within(CALL_TIMEOUT, join_then_lease_after_stop)

    assert all(isinstance(outcome, BrokerUnavailable) for outcome in outcomes), outcomes
    assert broker.counts()["leased"] == 0
    with pytest.raises(BrokerUnavailable):
        connect(server)


class CreatesMarker:
    """Unpickling this object creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def xml_request(*request: Any) -> bytes:
    return xmlrpc.client.dumps((request,), allow_none=True).encode("utf-8")


@pytest.mark.parametrize("session_first", [False, True], ids=["first-message", "in-session"])
def test_a_pickle_sent_with_the_right_key_is_never_loaded(
    broker: Broker, server: BrokerServer, tmp_path: Path, session_first: bool
) -> None:
    control, marker = tmp_path / "control", tmp_path / "marker"
    pickle.loads(pickle.dumps(CreatesMarker(control)))
    assert control.exists(), "the payload must be live for this test to mean anything"

    # The stock, pickle-speaking client of multiprocessing, holding the right key.
    raw = call_within(CALL_TIMEOUT, lambda: Client(server.address, authkey=KEY))
    try:
        if session_first:
            # Become a served session first, so the pickle reaches the per-client loop.
            raw.send_bytes(xml_request(None, "accept_connection", ("probe",), {}))
            assert raw.poll(CALL_TIMEOUT)
            assert b"#RETURN" in raw.recv_bytes()
        raw.send(CreatesMarker(marker))
        assert raw.poll(CALL_TIMEOUT), "the server did not answer the pickle"
        answer = raw.recv_bytes()
    finally:
        raw.close()

    assert not marker.exists()
    assert b"#TRACEBACK" in answer
    client = connect(server)
    assert call_within(CALL_TIMEOUT, client.join, "n1", {})["lease_seconds"] == 60.0
