"""Error texts of failed requests, made from exceptions real sockets on 127.0.0.1 raise."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from crawler.web.failures import MAX_ERROR_CHARS, describe_request_error, exception_reason
from crawler.web.retries import MAX_DOWN_PAUSE, down_pause, down_tries, is_no_answer, next_try_in
from crawler.web.safehttp import AddressPolicy, body_chunks, make_session, open_url
from tests.e2e.cluster import free_port
from tests.support.flaky_server import FlakyServer

NOISE = ("Errno", "0x", "ConnectionPool", "Max retries", "Caused by", "_ssl.c", "object at")


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection to ``answer`` in a thread."""

    def __init__(self, answer: Callable[[socket.socket], None], backlog: int = 16) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)  # close() does not wake a blocked accept()
        self.answer = answer
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self.answer(conn)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[socket.socket], None], scheme: str = "http") -> str:
        servers.append(RawServer(answer))
        return f"{scheme}://127.0.0.1:{servers[-1].port}/x"

    yield start
    for server in servers:
        server.close()


def failure_of(url: str, timeout: tuple[float, float] = (2.0, 2.0)) -> BaseException:
    """The exception a page or image GET of ``url`` raises, body read included."""
    session = make_session(2, "failures-test", AddressPolicy(allow_private=True))
    try:
        with open_url(session, url, timeout, 5) as response:
            for _ in body_chunks(response):
                pass
    except requests.RequestException as exc:
        return exc
    finally:
        session.close()
    raise AssertionError(f"{url} did not fail")


def assert_clean(text: str) -> None:
    assert len(text) <= MAX_ERROR_CHARS
    assert not [noise for noise in NOISE if noise in text], text


def answer(data: bytes, then: float = 0.0) -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(data)
        time.sleep(then)

    return send


def test_a_refused_port_is_a_retryable_connection_error():
    error, retryable = describe_request_error(failure_of(f"http://127.0.0.1:{free_port()}/"))
    assert (error, retryable) == ("connection_error: connection refused", True)
    assert is_no_answer(error)


def test_a_name_that_does_not_resolve_is_a_connection_error():
    error, retryable = describe_request_error(failure_of("http://no-such-host.invalid/"))
    assert error.startswith("connection_error: ") and retryable, error
    assert "resol" in error or "known" in error, error  # the resolver's own words
    assert_clean(error)


def test_a_connect_timeout_names_the_phase_and_the_seconds():
    # A listening socket whose accept queue is full drops new connections' SYNs.
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        exc = failure_of(f"http://127.0.0.1:{port}/", timeout=(0.3, 2.0))
    finally:
        for filler in fillers:
            filler.close()
        server.close()
    assert describe_request_error(exc) == ("timeout: connect timed out after 0.3 s", True)


def test_a_read_timeout_before_the_headers_and_in_the_body(serve):
    silent = serve(lambda conn: time.sleep(2))
    exc = failure_of(silent, timeout=(2.0, 0.3))
    assert describe_request_error(exc) == ("timeout: read timed out after 0.3 s", True)
    stalled = serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123", then=2))
    error, retryable = describe_request_error(failure_of(stalled, timeout=(2.0, 0.3)))
    assert error.startswith("timeout: read timed out") and retryable


def test_a_body_cut_short_says_how_much_came(serve):
    cut = serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"))
    error, retryable = describe_request_error(failure_of(cut))
    assert error == "connection_error: body cut short (10 bytes read, 90 more expected)"
    assert retryable


def test_a_server_that_hangs_up_or_resets_is_a_connection_error(serve):
    def reset(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    hung_up = describe_request_error(failure_of(serve(lambda conn: conn.recv(65536))))
    assert hung_up == ("connection_error: remote end closed connection without response", True)
    assert describe_request_error(failure_of(serve(reset))) == (
        "connection_error: connection reset by peer",
        True,
    )


def test_an_answer_that_is_not_http_is_a_bad_response_not_a_host_down(serve):
    garbage = describe_request_error(failure_of(serve(answer(b"GARBAGE\r\n\r\n"))))
    assert garbage == ("bad_response: bad status line 'GARBAGE'", True)
    long_line = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n"
    error, _ = describe_request_error(failure_of(serve(answer(long_line))))
    assert error == "bad_response: got more than 65536 bytes when reading header line"
    assert not is_no_answer(error)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1, made by openssl."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate"
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_a_self_signed_certificate_is_a_final_tls_error(serve, self_signed):
    def tls(conn: socket.socket) -> None:
        with self_signed.wrap_socket(conn, server_side=True) as wrapped:
            wrapped.recv(65536)

    error, retryable = describe_request_error(failure_of(serve(tls, "https")))
    assert (error, retryable) == (
        "tls_error: certificate verify failed: self-signed certificate",
        False,
    )
    assert not is_no_answer(error)


def test_tls_to_a_plain_http_server_is_a_tls_error(serve):
    error, retryable = describe_request_error(
        failure_of(serve(answer(b"HTTP/1.1 400 x\r\n\r\n"), "https"))
    )
    assert (error, retryable) == ("tls_error: wrong version number", False)


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("reset", "connection_error: "), ("cut", "connection_error: "), ("stall", "timeout: ")],
)
def test_the_flaky_servers_faults_keep_the_codes_the_downloader_reports(kind: str, prefix: str):
    server = FlakyServer(paths_per_kind=1)
    try:
        (route,) = [route for route in server.routes if route.kind == kind]
        error, retryable = describe_request_error(
            failure_of(server.url + route.path, timeout=(1.0, 1.0))
        )
    finally:
        server.close()
    assert error.startswith(prefix) and retryable, error
    assert_clean(error)


def test_hand_made_exceptions_keep_their_message():
    assert describe_request_error(requests.ConnectionError("connection refused")) == (
        "connection_error: connection refused",
        True,
    )
    assert describe_request_error(requests.exceptions.ReadTimeout("read timed out")) == (
        "timeout: read timed out",
        True,
    )
    assert describe_request_error(requests.exceptions.ConnectTimeout()) == (
        "timeout: connect timed out",
        True,
    )
    error, retryable = describe_request_error(requests.exceptions.InvalidURL("Failed to parse: x"))
    assert (error, retryable) == ("request_error: failed to parse: x", False)


def test_a_pathological_message_is_cut_between_words():
    words = " ".join(f"word{n}" for n in range(2000))
    error, _ = describe_request_error(requests.ConnectionError(words))
    assert len(error) <= MAX_ERROR_CHARS and error.endswith("...")
    assert error[:-3].split()[-1].startswith("word") and error[:-3] in f"connection_error: {words}"
    assert exception_reason(OSError(28, "No space left on device", "/out/x")) == (
        "no space left on device: '/out/x'"
    )


def test_pauses_grow_to_the_cap_and_tries_fill_the_down_timeout():
    assert [down_pause(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 120, 120]
    assert down_pause(10_000) == MAX_DOWN_PAUSE
    assert down_tries(3, 600) == 12  # pauses 1+2+...+64 = 127, then 4 x 120: 607 s
    assert sum(down_pause(n) for n in range(1, down_tries(3, 600))) >= 600
    assert sum(down_pause(n) for n in range(1, down_tries(3, 600) - 1)) < 600
    assert down_tries(3, 0) == 3 and down_tries(20, 600) == 20
    assert down_tries(1, float("inf")) > 10**6, "bounded, if absurdly, and no overflow"


def test_next_try_in():
    assert next_try_in(1, True, 3, 600) == 1
    assert next_try_in(11, True, 3, 600) == MAX_DOWN_PAUSE
    assert next_try_in(12, True, 3, 600) is None, "12 tries for a host that gives no answer"
    assert next_try_in(2, False, 3, 600) == 2
    assert next_try_in(3, False, 3, 600) is None, "max_attempts tries for other failures"
