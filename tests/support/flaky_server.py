"""A real HTTP server on loopback that fails on purpose, the same way on every run.

Each image path fails its first K requests in the way its first segment names, then
serves a real PNG of its own (no two paths share content):

* ``/flaky500/``: 500.
* ``/flaky503/``: 503 with ``Retry-After`` as an HTTP-date ``retry_after`` s past ``Date``.
* ``/throttle429/``: 429 with ``Retry-After: <retry_after>`` (delay-seconds).
* ``/reset/``: a TCP reset, mid-headers on even requests, right after them on odd ones.
* ``/cut/``: ``Content-Length`` says more than is sent, then the connection closes.
* ``/stall/``: headers and half the body, then silence for ``stall_seconds``, then close.
* ``/trickle/``: never fails; the body comes in small pieces over ``trickle_seconds``
  (each gap well under a read timeout of 1 s, the whole longer than one).
* ``/gone404/``: always 404. ``/ok/``: never fails.

``/`` and ``/index.html`` list every image as ``<img src>``, so a crawl finds them all.
Every request is recorded (``hits``) and, if asked, written to an access log as
``METHOD PATH STATUS`` (``-`` for a reset before the status line), flushed before
the body goes out. Every sleep is bounded and cut short by ``close()``.
"""

from __future__ import annotations

import contextlib
import io
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from PIL import Image

from crawler.demo.server import LocalHTTPServer

# How many requests of each path fail before one succeeds.
DEFAULT_FAILURES = {
    "flaky500": 2,
    "flaky503": 2,
    "throttle429": 1,
    "reset": 2,
    "cut": 2,
    "stall": 1,
    "trickle": 0,
    "gone404": 0,  # it fails always, whatever K says
    "ok": 0,
}
MAX_SLEEP = 5.0
TRICKLE_PIECES = 12


@cache
def png_for(path: str) -> bytes:
    """A 32x32 PNG of noise seeded by the path: distinct per path, the same every run."""
    pixels = random.Random(path).randbytes(32 * 32 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 32), pixels).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Route:
    kind: str
    path: str
    failures: int


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    status: int | None  # None: reset before a status line went out
    at: float  # time.monotonic() when the request arrived


class _Aborted(Exception):
    """The handler reset the connection on purpose."""


class FlakyServer(LocalHTTPServer):
    def __init__(
        self,
        host: str = "127.0.0.1",
        failures: dict[str, int] | None = None,
        paths_per_kind: int = 2,
        access_log: Path | None = None,
        retry_after: int = 2,
        stall_seconds: float = 2.0,
        trickle_seconds: float = 1.5,
    ) -> None:
        if not 0 <= max(stall_seconds, trickle_seconds) <= MAX_SLEEP:
            raise ValueError(f"sleeps must stay within {MAX_SLEEP} s")
        self.failures = {**DEFAULT_FAILURES, **(failures or {})}
        self.routes = [
            Route(kind, f"/{kind}/{kind}-{index}.png", count)
            for kind, count in self.failures.items()
            for index in range(paths_per_kind)
        ]
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.trickle_seconds = trickle_seconds
        self.hits: list[Hit] = []
        self.closing = threading.Event()
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log = access_log.open("a", encoding="utf-8") if access_log else None
        super().__init__((host, 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def arrive(self, path: str) -> int:
        """Count a request for ``path``; returns how many came before it."""
        with self._lock:
            count = self._seen.get(path, 0)
            self._seen[path] = count + 1
        return count

    def record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)
            if self._log is not None:
                status = "-" if hit.status is None else hit.status
                self._log.write(f"{hit.method} {hit.path} {status}\n")
                self._log.flush()

    def get_times(self, path: str) -> list[float]:
        """When each GET of ``path`` arrived (monotonic seconds), in order."""
        with self._lock:
            return [hit.at for hit in self.hits if hit.method == "GET" and hit.path == path]

    def index_html(self) -> bytes:
        images = "\n".join(f'<img src="{route.path}" alt="{route.kind}">' for route in self.routes)
        return f"<!doctype html>\n<title>flaky</title>\n<body>\n{images}\n</body>\n".encode()

    def handle_error(self, request, client_address) -> None:
        """Clients that give up on a stalled or trickling body are the point: stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close(self) -> None:
        self.closing.set()  # wakes handlers that are stalling or trickling
        self.shutdown()
        self.server_close()
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # drop idle keep-alive connections eventually
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: FlakyServer

    def log_message(self, *args) -> None:  # the server keeps its own record
        pass

    def handle(self) -> None:
        with contextlib.suppress(_Aborted, ConnectionError):
            super().handle()

    def do_GET(self) -> None:
        arrived = time.monotonic()
        path = self.path
        earlier = self.server.arrive(path)
        kind = path.split("/")[1] if path.count("/") == 2 else ""
        failing = earlier < self.server.failures.get(kind, 0)
        if path in ("/", "/index.html"):
            self._send(arrived, 200, self.server.index_html(), "text/html; charset=utf-8")
        elif kind not in self.server.failures or kind == "gone404":
            self._send(arrived, 404, b"not found\n", "text/plain")
        elif failing and kind == "flaky500":
            self._send(arrived, 500, b"temporarily broken\n", "text/plain")
        elif failing and kind == "flaky503":
            now = int(time.time())
            retry_at = formatdate(now + self.server.retry_after, usegmt=True)
            self._send(arrived, 503, b"busy\n", "text/plain", now, {"Retry-After": retry_at})
        elif failing and kind == "throttle429":
            retry = {"Retry-After": str(self.server.retry_after)}
            self._send(arrived, 429, b"slow down\n", "text/plain", headers=retry)
        elif failing and kind == "reset":
            self._reset(arrived, mid_headers=earlier % 2 == 0)
        elif failing and kind == "cut":
            self._send_part(arrived, png_for(path), pause=0.0)
        elif failing and kind == "stall":
            self._send_part(arrived, png_for(path), pause=self.server.stall_seconds)
        elif kind == "trickle":
            self._trickle(arrived, png_for(path))
        else:
            self._send(arrived, 200, png_for(path), "image/png")

    # -- responses -------------------------------------------------------------------

    def _start(
        self,
        arrived: float,
        status: int,
        content_type: str,
        length: int,
        now: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Status line and headers out, request recorded; the body is the caller's."""
        self.send_response_only(status)
        self.send_header("Date", formatdate(now, usegmt=True))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.server.record(Hit(self.command, self.path, status, arrived))
        self.end_headers()

    def _send(
        self,
        arrived: float,
        status: int,
        body: bytes,
        content_type: str,
        now: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._start(arrived, status, content_type, len(body), now, headers)
        self.wfile.write(body)

    def _send_part(self, arrived: float, body: bytes, pause: float) -> None:
        """Promise the whole body, send half, wait ``pause`` s, hang up."""
        self._start(arrived, 200, "image/png", len(body))
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True
        self.server.closing.wait(pause)

    def _trickle(self, arrived: float, body: bytes) -> None:
        self._start(arrived, 200, "image/png", len(body))
        step = -(-len(body) // TRICKLE_PIECES)
        for offset in range(0, len(body), step):
            if self.server.closing.wait(self.server.trickle_seconds / TRICKLE_PIECES):
                break
            self.wfile.write(body[offset : offset + step])

    def _reset(self, arrived: float, mid_headers: bool) -> None:
        """Send a little, then reset the connection (SO_LINGER 0: RST, not FIN)."""
        if mid_headers:
            self.server.record(Hit(self.command, self.path, None, arrived))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: ima")
        else:
            self._start(arrived, 200, "image/png", len(png_for(self.path)))
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The file objects hold references to the socket: all must go for the close to happen.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()
        raise _Aborted
