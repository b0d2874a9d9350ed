"""Several "hosts" on loopback (one port each) that record every request's timing.

The crawler's unit of politeness is ``host:port``, so N ports are N hosts to it.
Port 0 serves the page (``/index.html``) that references ``images_per_host`` PNGs on
every image host; each image host can be made slow (``delay`` per response), answer
429 with ``Retry-After`` to the first request of a path prefix, or publish a
robots.txt ``Crawl-delay``. ``Recorder`` keeps, per host, the arrival time of every
image request and the most requests it had open at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from crawler.demo.server import LocalHTTPServer
from tests.support.flaky_server import png_for

MAX_DELAY = 5.0


@dataclass
class HostBehaviour:
    delay: float = 0.0  # seconds per image response
    throttle_first: int = 0  # the first N image requests get 429 Retry-After
    retry_after: int = 2
    crawl_delay: float | None = None  # published in robots.txt


@dataclass
class HostRecord:
    starts: list[float] = field(default_factory=list)  # image request arrivals
    ends: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    throttle_ends: list[float] = field(default_factory=list)  # when each 429 was sent
    open_now: int = 0
    max_open: int = 0


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[int, HostRecord] = {}

    def begin(self, port: int) -> float:
        with self.lock:
            record = self.hosts.setdefault(port, HostRecord())
            now = time.monotonic()
            record.starts.append(now)
            record.open_now += 1
            record.max_open = max(record.max_open, record.open_now)
            return now

    def end(self, port: int, status: int) -> None:
        with self.lock:
            record = self.hosts[port]
            record.open_now -= 1
            record.ends.append(time.monotonic())
            record.statuses.append(status)
            if status == 429:
                record.throttle_ends.append(record.ends[-1])


class HostServer(LocalHTTPServer):
    def __init__(
        self, recorder: Recorder, behaviour: HostBehaviour, page: str = "", stop=None
    ) -> None:
        self.recorder = recorder
        self.behaviour = behaviour
        self.page = page
        self.served = 0
        self.stop = stop or threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HostServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        if self.path == "/index.html":
            return self._send(200, "text/html; charset=utf-8", server.page.encode())
        if self.path == "/robots.txt":
            delay = server.behaviour.crawl_delay
            if delay is None:
                return self._send(404, "text/plain", b"no robots.txt\n")
            return self._send(200, "text/plain", f"User-agent: *\nCrawl-delay: {delay}\n".encode())
        if not self.path.startswith("/img/"):
            return self._send(404, "text/plain", b"not found\n")
        server.recorder.begin(server.port)
        status = 200
        try:
            with server.recorder.lock:
                server.served += 1
                throttle = server.served <= server.behaviour.throttle_first
            if throttle:
                status = 429
                retry = str(server.behaviour.retry_after)
                return self._send(429, "text/plain", b"slow down\n", {"Retry-After": retry})
            server.stop.wait(min(server.behaviour.delay, MAX_DELAY))
            return self._send(200, "image/png", png_for(f"{server.port}{self.path}"))
        finally:
            server.recorder.end(server.port, status)

    def _send(self, status: int, mime: str, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class Hosts:
    """A page host plus one image host per behaviour; ``close()`` stops them all."""

    def __init__(self, behaviours: list[HostBehaviour], images_per_host: int) -> None:
        self.recorder = Recorder()
        self.stop = threading.Event()
        self.images = [HostServer(self.recorder, b, stop=self.stop) for b in behaviours]
        tags = [
            f'<img src="{host.origin}/img/{n}.png">'
            for n in range(images_per_host)
            for host in self.images
        ]
        page = "<!doctype html><title>hosts</title>\n" + "\n".join(tags)
        self.page = HostServer(self.recorder, HostBehaviour(), page, stop=self.stop)

    @property
    def seed(self) -> str:
        return self.page.origin + "/index.html"

    def record(self, index: int) -> HostRecord:
        return self.recorder.hosts.get(self.images[index].port, HostRecord())

    def close(self) -> None:
        for server in [self.page, *self.images]:
            server.close()
