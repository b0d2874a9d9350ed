"""Tests for serving the broker over TCP: a real server and client on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing import AuthenticationError
from multiprocessing.connection import CHALLENGE, Client, Listener
from pathlib import Path
from typing import Any

import pytest

from crawler.broker.broker import Broker
from crawler.compat.multiprocessing import starts_like_a_challenge
from crawler.config import QueueConfig
from crawler.errors import AuthKeyError, BrokerUnavailable, NotAHarvester
from crawler.records import Result
from crawler.wire.manager_client import ManagerWire
from crawler.wire.manager_server import BrokerServer, EventThrottle, ServerLimits, handshake_failure

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


@pytest.fixture
def serve_with(broker: Broker) -> Iterator[Callable[..., BrokerServer]]:
    """Start a server with other ``ServerLimits``; every one is stopped at the end."""
    started: list[BrokerServer] = []

    def start(**limits: Any) -> BrokerServer:
        server = BrokerServer(
            broker,
            ("127.0.0.1", 0),
            KEY,
            replace(ServerLimits.from_config(QueueConfig()), **limits),
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
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


def connect(server: BrokerServer, key: bytes = KEY) -> ManagerWire:
    return call_within(CALL_TIMEOUT, ManagerWire, server.address, key)


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
    assert finished[0].result == Result.from_wire(result)  # every value as it was sent
    assert type(finished[0].result.elapsed) is float
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


def wait_for_events(broker: Broker, name: str, count: int = 1) -> list[dict[str, Any]]:
    """The fields of the ``name`` events the broker collects within a bounded wait."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + CALL_TIMEOUT
    while len(found) < count and time.monotonic() < deadline:
        found += [fields for event, fields in broker.take_updates()[1] if event == name]
        time.sleep(0.02)
    assert len(found) >= count, f"{count} {name} events expected, got {found}"
    return found


def connection_threads(peers: list[socket.socket]) -> Callable[[], int]:
    """Counts the server's live threads serving these client sockets (named after them)."""
    names = {"connection {}:{}".format(*peer.getsockname()) for peer in peers}
    return lambda: sum(thread.name in names for thread in threading.enumerate())


def wait_until(condition: Callable[[], bool], seconds: float = CALL_TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{condition} still false after {seconds} s"
        time.sleep(0.02)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    sock.settimeout(CALL_TIMEOUT)  # our own socket: a hang fails the test
    received = b""
    with contextlib.suppress(ConnectionResetError):  # it hung up with our bytes unread
        while chunk := sock.recv(4096):
            received += chunk
    return received


def test_wrong_authkey_is_an_authkey_error(broker: Broker, server: BrokerServer) -> None:
    wrong_key = b"not-the-right-key-at-all"
    with pytest.raises(AuthKeyError, match="authkey"):
        connect(server, key=wrong_key)

    # The server shrugs the stranger off, says so in the log and keeps serving.
    (event,) = wait_for_events(broker, "auth_failed")
    assert event["reason"] == "wrong key"
    assert event["peer"].startswith("127.0.0.1:")
    assert KEY.decode() not in repr(event) and wrong_key.decode() not in repr(event)
    assert call_within(CALL_TIMEOUT, connect(server).join, "n1", {})["lease_seconds"] == 60.0


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: harvester\r\n\r\n", "protocol error"),
        (b"\xff" * 12, "protocol error"),  # a 64-bit length far beyond what we read
        (struct.pack("!i", 16) + b"sixteen bytes!!!", "wrong key"),  # a well-formed answer
        (struct.pack("!i", 200) + b"cut short", "protocol error"),
        (b"", "closed"),
    ],
    ids=["http", "huge-length", "wrong-digest", "cut-short", "nothing"],
)
def test_garbage_is_logged_and_the_server_keeps_serving(
    broker: Broker, server: BrokerServer, garbage: bytes, reason: str
) -> None:
    with socket.create_connection(server.address) as stranger:
        stranger.sendall(garbage)
        # Our end of the stream, for the cases that wait for more; the server may
        # already have hung up on what it read (ENOTCONN then), which is as good.
        with contextlib.suppress(OSError):
            stranger.shutdown(socket.SHUT_WR)
        read_until_closed(stranger)

    (event,) = wait_for_events(broker, "auth_failed")
    assert event["reason"] == reason
    assert call_within(CALL_TIMEOUT, connect(server).join, "n1", {})["lease_seconds"] == 60.0


def test_a_half_open_connection_is_dropped_after_the_handshake_timeout(
    broker: Broker, serve_with: Callable[..., BrokerServer]
) -> None:
    server = serve_with(handshake_timeout=0.3)
    started = time.monotonic()
    silent = [socket.create_connection(server.address) for _ in range(5)]
    peers = {f"127.0.0.1:{sock.getsockname()[1]}" for sock in silent}
    serving = connection_threads(silent)
    try:
        wait_until(lambda: serving() == 5)
        for sock in silent:
            read_until_closed(sock)  # the challenge, then the server hangs up
        wait_until(lambda: serving() == 0)
    finally:
        for sock in silent:
            sock.close()

    assert time.monotonic() - started >= 0.3
    # Five failures from one address within the interval: one event.
    (event,) = wait_for_events(broker, "auth_failed")
    assert event["reason"] == "timeout" and event["peer"] in peers
    assert call_within(CALL_TIMEOUT, connect(server).join, "n1", {})["lease_seconds"] == 60.0


def test_an_authenticated_connection_may_idle_longer_than_the_handshake_timeout(
    serve_with: Callable[..., BrokerServer],
) -> None:
    server = serve_with(handshake_timeout=0.2)
    client = connect(server)
    call_within(CALL_TIMEOUT, client.join, "n1", {})
    time.sleep(0.6)
    assert call_within(CALL_TIMEOUT, client.lease_batch, "n1", 5, 0) == {
        "tasks": [],
        "done": False,
    }


def test_a_flood_of_idle_connections_does_not_lock_a_downloader_out(
    broker: Broker, serve_with: Callable[..., BrokerServer]
) -> None:
    server = serve_with(max_connections=100)
    broker.add_tasks([("http://a.test/1.png", "http://a.test/", "img")])
    flood = [socket.create_connection(server.address) for _ in range(300)]
    serving = connection_threads(flood)
    try:
        # Each connection of the downloader takes the place of the oldest idle one.
        client = connect(server)
        assert call_within(CALL_TIMEOUT, client.join, "n1", {})["lease_seconds"] == 60.0
        leased = call_within(CALL_TIMEOUT, client.lease_batch, "n1", 5, 0)
        assert leased["tasks"] == [[1, "http://a.test/1.png"]]
        wait_until(lambda: serving() <= 100)
    finally:
        for sock in flood:
            sock.close()
    wait_until(lambda: serving() == 0)
    (event,) = wait_for_events(broker, "connection_limit")
    assert event["limit"] == 100 and event["dropped"] == "oldest_handshake"


def open_session(server: BrokerServer) -> Any:
    """An authenticated connection in the served per-client loop, idle."""
    raw = call_within(CALL_TIMEOUT, lambda: Client(server.address, authkey=KEY))
    raw.send_bytes(wire_request(None, "accept_connection", ("idle",), {}))
    assert raw.poll(CALL_TIMEOUT) and b"#RETURN" in raw.recv_bytes()
    return raw


def test_beyond_the_limit_of_authenticated_connections_a_new_one_is_closed(
    broker: Broker, serve_with: Callable[..., BrokerServer]
) -> None:
    server = serve_with(max_connections=2)
    sessions = [open_session(server) for _ in range(2)]
    try:
        with socket.create_connection(server.address) as late:
            assert read_until_closed(late) == b"", "closed at once, without a challenge"
        with pytest.raises(BrokerUnavailable):
            connect(server)
    finally:
        for raw in sessions:
            raw.close()

    (event,) = wait_for_events(broker, "connection_limit")
    assert event["dropped"] == "new_connection"
    # The closed sessions free their slots once their server threads notice the EOF.
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        try:
            client = connect(server)
            break
        except BrokerUnavailable:
            assert time.monotonic() < deadline, "slots were not freed"
            time.sleep(0.05)
    assert call_within(CALL_TIMEOUT, client.join, "n1", {})["lease_seconds"] == 60.0


def test_event_throttle_admits_one_event_per_key_per_interval() -> None:
    throttle = EventThrottle(interval=10.0)

    assert throttle.admit("10.0.0.1", now=100.0) == 0
    assert throttle.admit("10.0.0.1", now=101.0) is None
    assert throttle.admit("10.0.0.1", now=109.9) is None
    assert throttle.admit("10.0.0.2", now=105.0) == 0  # another peer has its own interval
    assert throttle.admit("10.0.0.1", now=110.0) == 2  # the two held back are counted
    assert throttle.admit("10.0.0.1", now=115.0) is None
    assert throttle.admit("10.0.0.1", now=125.0) == 1
    assert throttle.admit("10.0.0.1", now=140.0) == 0


def test_event_throttle_forgets_quiet_keys_when_it_holds_too_many() -> None:
    throttle = EventThrottle(interval=10.0, max_keys=2)
    throttle.admit("quiet", now=0.0)
    throttle.admit("busy", now=5.0)
    throttle.admit("busy", now=6.0)

    assert throttle.admit("new", now=12.0) == 0

    assert set(throttle.last) == {"busy", "new"}  # "quiet" had nothing left to report
    assert throttle.admit("busy", now=15.0) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AuthenticationError("digest received was wrong"), "wrong key"),
        (BlockingIOError(11, "Resource temporarily unavailable"), "timeout"),
        (EOFError(), "closed"),
        (ConnectionResetError(104, "Connection reset by peer"), "closed"),
        (OSError("bad message length"), "protocol error"),
        (AssertionError("message = b'GET /'"), "protocol error"),
    ],
)
def test_handshake_failure_reasons(error: BaseException, reason: str) -> None:
    assert handshake_failure(error) == reason


def test_nothing_listening_is_broker_unavailable() -> None:
    # A bound socket that does not listen holds the port, so every connect is refused.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        with pytest.raises(BrokerUnavailable, match="not reachable"):
            call_within(CALL_TIMEOUT, ManagerWire, holder.getsockname(), KEY)


def test_calls_after_stop_are_broker_unavailable(broker: Broker) -> None:
    server = BrokerServer(broker, ("127.0.0.1", 0), KEY)
    server.start()
    broker.add_tasks([("http://a.test/1.png", "http://a.test/", "img")])

    def join_then_lease_after_stop() -> list[Any]:
        # One thread throughout: a proxy keeps one connection per thread, and it is the
        # connection opened before the stop that must not be served any more.
        client = ManagerWire(server.address, KEY)
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


def wire_request(*request: Any) -> bytes:
    """A manager request as our wire carries it (JSON)."""
    return json.dumps(request).encode("utf-8")


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
            raw.send_bytes(wire_request(None, "accept_connection", ("probe",), {}))
            assert raw.poll(CALL_TIMEOUT)
            assert b"#RETURN" in raw.recv_bytes()
        raw.send(CreatesMarker(marker))
        assert raw.poll(CALL_TIMEOUT), "the server did not answer the pickle"
        try:
            answer = raw.recv_bytes()
        except EOFError:
            answer = b"(closed)"
    finally:
        raw.close()

    assert not marker.exists()
    # A first message is answered with an error; in a session, a message that is not
    # a request closes the connection (messages.py).
    assert answer == b"(closed)" if session_first else b"#TRACEBACK" in answer
    client = connect(server)
    assert call_within(CALL_TIMEOUT, client.join, "n1", {})["lease_seconds"] == 60.0


# -- the client's handshake is bounded ------------------------------------------------

SHORT = 0.5  # the handshake timeout these tests give the client
SLACK = 3.0  # how much later than its deadline a loaded machine may end a wait
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"


@contextlib.contextmanager
def stranger(greet: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 that is no harvester: ``greet`` runs on each accepted
    connection, which then stays open, silent, until the test ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            with contextlib.suppress(OSError):
                greet(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(CALL_TIMEOUT)
        listener.close()
        for connection in accepted:
            connection.close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[tuple[str, int]]:
    """A real HTTP server on 127.0.0.1: it waits for a request, as every one does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(CALL_TIMEOUT)


def connect_timed(address: tuple[str, int], timeout: float = SHORT) -> tuple[Exception, float]:
    """The error ManagerWire raises for ``address`` and how long it took."""
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        call_within(timeout + SLACK, ManagerWire, address, KEY, timeout)
    assert KEY.decode() not in str(raised.value)
    return raised.value, time.monotonic() - started


def silent(_connection: socket.socket) -> None:
    pass


def test_a_server_that_says_nothing_is_not_a_harvester_after_the_deadline() -> None:
    with stranger(silent) as address:
        error, seconds = connect_timed(address)

    assert isinstance(error, NotAHarvester)
    assert str(error) == (
        f"127.0.0.1:{address[1]} did not answer the crawler handshake within 0.5 s: "
        "is it a crawler harvester (crawler harvest --listen ...)? One started with "
        "--tls-cert needs --tls-ca here"
    )
    assert SHORT - 0.05 <= seconds < SHORT + SLACK


def test_an_http_server_is_not_a_harvester_after_the_deadline() -> None:
    with http_server() as address:
        error, seconds = connect_timed(address)

    assert isinstance(error, NotAHarvester)
    assert "did not answer the crawler handshake within 0.5 s" in str(error)
    assert SHORT - 0.05 <= seconds < SHORT + SLACK


@pytest.mark.parametrize(
    ("greeting", "shown"),
    [
        (SSH_BANNER, "'SSH-2.0-OpenSSH_9.6\\r\\n'"),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "'HTTP/1.1 400 Bad Request"),
        (b"\xff" * 12, "'\\xff\\xff"),  # a 64-bit length far beyond a challenge
        (struct.pack("!i", 16) + b"sixteen bytes!!!", "'\\x00\\x00\\x00\\x10sixteen"),
    ],
    ids=["ssh-banner", "http-reply", "huge-length", "not-a-challenge"],
)
def test_a_server_that_answers_garbage_is_not_a_harvester_at_once(
    greeting: bytes, shown: str
) -> None:
    with stranger(lambda connection: connection.sendall(greeting)) as address:
        error, seconds = connect_timed(address, timeout=CALL_TIMEOUT)

    assert isinstance(error, NotAHarvester)
    assert str(error).startswith(
        f"127.0.0.1:{address[1]} is not a crawler harvester (it answered {shown}"
    )
    assert "\n" not in str(error)
    assert seconds < CALL_TIMEOUT / 2, "garbage is known for what it is without waiting"


def test_a_server_that_closes_at_once_is_worth_a_retry() -> None:
    # A port forward whose far end is not up yet, or a harvester at its connection limit.
    with stranger(lambda connection: connection.close()) as address:
        error, seconds = connect_timed(address, timeout=CALL_TIMEOUT)

    assert isinstance(error, BrokerUnavailable) and "not reachable" in str(error)
    assert seconds < CALL_TIMEOUT / 2


def test_a_peer_that_stalls_after_its_challenge_is_worth_a_retry() -> None:
    challenge = CHALLENGE + os.urandom(20)
    fake = struct.pack("!i", len(challenge)) + challenge
    with stranger(lambda connection: connection.sendall(fake)) as address:
        error, seconds = connect_timed(address)

    assert isinstance(error, BrokerUnavailable)
    assert "handshake stalled: no answer within 0.5 s" in str(error)
    assert SHORT - 0.05 <= seconds < SHORT + SLACK


def test_the_deadline_covers_getting_the_proxies() -> None:
    # A manager with our key that passes the handshake and then never answers a request.
    listener = Listener(("127.0.0.1", 0), authkey=KEY)
    accepted: list[Any] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    try:
        error, seconds = connect_timed(listener.address)
    finally:
        thread.join(CALL_TIMEOUT)
        for connection in accepted:
            connection.close()
        listener.close()

    assert isinstance(error, BrokerUnavailable)
    assert "did not finish connecting within 0.5 s" in str(error)
    assert SHORT - 0.05 <= seconds < SHORT + SLACK


def test_after_the_handshake_calls_and_idling_are_not_bounded(broker: Broker) -> None:
    server = BrokerServer(broker, ("127.0.0.1", 0), KEY)
    server.start()
    try:
        client = call_within(CALL_TIMEOUT, ManagerWire, server.address, KEY, 0.2)
        call_within(CALL_TIMEOUT, client.join, "n1", {})
        time.sleep(0.5)
        # A long poll (the broker waits 0.6 s for a task) outlasts the handshake timeout.
        started = time.monotonic()
        leased = call_within(CALL_TIMEOUT, client.lease_batch, "n1", 5, 0.6)
        assert time.monotonic() - started >= 0.55
    finally:
        server.stop()
    assert leased == {"tasks": [], "done": False}


@pytest.mark.parametrize(
    ("greeting", "plausible"),
    [
        (struct.pack("!i", 31) + CHALLENGE + b"x" * 20, True),
        (struct.pack("!i", 31) + CHALLENGE[:3], True),  # cut short by the network
        (b"\x00\x00", True),
        (struct.pack("!i", 300) + CHALLENGE, False),  # longer than answer_challenge reads
        (struct.pack("!i", 4) + CHALLENGE, False),  # too short to hold the challenge
        (struct.pack("!i", 31) + b"#CHALLENGX", False),
        (b"\xff\xff\xff\xff", False),
        (b"H", False),
        (SSH_BANNER, False),
    ],
)
def test_starts_like_a_challenge(greeting: bytes, plausible: bool) -> None:
    assert starts_like_a_challenge(greeting) is plausible


GEVENT_CLIENT = """
from gevent import monkey

monkey.patch_all()
import json, os, sys, time
import gevent
from crawler.wire.manager_client import ManagerWire

key = os.environ["TEST_AUTHKEY"].encode()
silent, garbage, harvester = (("127.0.0.1", int(port)) for port in sys.argv[1:4])
ticks = 0

def tick():
    global ticks
    while True:
        gevent.sleep(0.02)
        ticks += 1

gevent.spawn(tick)

def attempt(address):
    started, ticks_before = time.monotonic(), ticks
    try:
        ManagerWire(address, key, 0.5)
        outcome = "connected"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    print(json.dumps({"outcome": outcome, "seconds": seconds, "ticks": ticks - ticks_before}))

attempt(silent)
attempt(garbage)
client = ManagerWire(harvester, key, 0.3)
client.join("g1", {})
gevent.sleep(0.8)
print(json.dumps({"outcome": client.lease_batch("g1", 5, 0.6)}))
"""


def test_under_gevent_the_deadline_holds_and_other_greenlets_run(
    server: BrokerServer,
) -> None:
    with stranger(silent) as quiet, stranger(lambda c: c.sendall(SSH_BANNER)) as talker:
        done = subprocess.run(
            [sys.executable, "-c", GEVENT_CLIENT]
            + [str(port) for port in (quiet[1], talker[1], server.address[1])],
            env={**os.environ, "TEST_AUTHKEY": KEY.decode()},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    waited, refused, leased = (json.loads(line) for line in done.stdout.splitlines())
    assert waited["outcome"].startswith("NotAHarvester: ")
    assert "did not answer the crawler handshake within 0.5 s" in waited["outcome"]
    assert SHORT - 0.05 <= waited["seconds"] < SHORT + SLACK
    assert waited["ticks"] >= 5, "the wait must leave the hub to other greenlets"
    assert refused["outcome"].startswith("NotAHarvester: ")
    assert "is not a crawler harvester (it answered 'SSH-2.0" in refused["outcome"]
    assert leased["outcome"] == {"tasks": [], "done": False}
