"""The demo site's server: static files on 127.0.0.1 with the right content types, an
access log, an optional delay per image (the benchmark's latency); refuses paths that
leave its folder; over HTTPS when given a certificate and its key (the tests' private
CAs); answers conditional GETs as static servers do (``ETag`` and ``Last-Modified`` on
every file, 304 when ``If-None-Match`` or ``If-Modified-Since`` says the client has
it). ``LocalHTTPServer`` is the base the test servers build on."""

from __future__ import annotations

import email.utils
import hashlib
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from crawler.demo.formats import CONTENT_TYPES, content_type


class LocalHTTPServer(ThreadingHTTPServer):
    """A threaded test server on a local address, also the base of the tests' servers."""

    daemon_threads = True

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can stall."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class DemoServer(LocalHTTPServer):
    """Threaded static file server for a generated site, quiet except for its access log."""

    def __init__(
        self,
        root: Path,
        address: tuple[str, int],
        access_log: Path | None,
        image_delay: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        hotlink_protect: bool = False,
        require: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.root = root.resolve()
        # (header, value) every request but robots.txt's must carry, else 403, as a
        # site behind a login or consent does; for Cookie, one of its cookies.
        self.require = require
        self.access_log = access_log
        self.image_delay = image_delay
        # As image CDNs do: an image requested without a Referer of this site is 403.
        self.hotlink_protect = hotlink_protect
        self.referers: dict[str, str | None] = {}  # path -> the last request's Referer
        self.header_names: dict[str, set[str]] = {}  # path -> the last request's headers
        self._log_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.scheme = "http"
        if tls is not None:  # (certificate chain, key): every connection is TLS
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            # The handshake in the handler's thread, not in the accepting loop.
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}/"

    def log_access(self, method: str, path: str, status: int, size: int) -> None:
        if self.access_log is None:
            return
        with self._log_lock, self.access_log.open("a", encoding="utf-8") as f:
            f.write(f"{method} {path} {status} {size}\n")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-response is normal for a crawler, and so is one that
        refuses our certificate; stay quiet about them."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)

    def close(self) -> None:
        """Stop the serving thread and release the socket."""
        self.shutdown()
        self.server_close()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    timeout = 60  # drop idle keep-alive connections eventually
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per response on a keep-alive connection).
    disable_nagle_algorithm = True
    server: DemoServer

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, *, with_body: bool) -> None:
        status, body, ctype, validators = self._lookup()
        referer = self.headers.get("Referer")
        self.server.referers[self.path] = referer
        self.server.header_names[self.path] = {name.lower() for name in self.headers}
        if self.path != "/robots.txt" and not all(
            self._carries(name, value) for name, value in self.server.require
        ):
            status, body, ctype = 403, b"log in first\n", CONTENT_TYPES[".txt"]
        hotlinked = not (referer or "").startswith(self.server.url)
        if self.server.hotlink_protect and ctype.startswith("image/") and hotlinked:
            status, body, ctype = 403, b"no hotlinking\n", CONTENT_TYPES[".txt"]
        if status == 200 and self._client_has(*validators):
            status, body = 304, b""
        if self.server.image_delay and ctype.startswith("image/"):
            time.sleep(self.server.image_delay)  # models a slow network or server
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status in (200, 304):
            self.send_header("ETag", validators[0])
            self.send_header("Last-Modified", email.utils.formatdate(validators[1], usegmt=True))
        self.end_headers()
        # Log before the body goes out, so a client that has read the response can
        # count on finding its request in the log.
        self.server.log_access(self.command, self.path, status, len(body) if with_body else 0)
        if with_body:
            self.wfile.write(body)

    def _client_has(self, etag: str, modified: float) -> bool:
        """RFC 9110 13.2.2: If-None-Match decides when sent, else If-Modified-Since."""
        tags = self.headers.get("If-None-Match")
        if tags is not None:
            return any(tag.strip() in (etag, "*", "W/" + etag) for tag in tags.split(","))
        since = self.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            when = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(modified) <= when

    def _carries(self, name: str, value: str) -> bool:
        given = self.headers.get(name) or ""
        if name.lower() == "cookie":
            return value in [part.strip() for part in given.split(";")]
        return given == value

    def _lookup(self) -> tuple[int, bytes, str, tuple[str, float]]:
        """Map the request path to a file under root, refusing anything that could
        escape it: (status, body, content type, (its ETag, its modification time))."""
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        none = ("", 0.0)
        if ".." in parts or "\x00" in path:
            return 403, b"forbidden\n", CONTENT_TYPES[".txt"], none
        target = self.server.root.joinpath(*parts)
        if target.is_dir():
            target = target / "index.html"
        if not target.resolve().is_relative_to(self.server.root):
            return 403, b"forbidden\n", CONTENT_TYPES[".txt"], none
        if not target.is_file():
            return 404, b"not found\n", CONTENT_TYPES[".txt"], none
        body = target.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return 200, body, content_type(target.name), (etag, target.stat().st_mtime)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines; the access log replaces them."""


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: Path | None = None,
    image_delay: float = 0.0,
    tls: tuple[Path, Path] | None = None,
    hotlink_protect: bool = False,
    require: tuple[tuple[str, str], ...] = (),
) -> DemoServer:
    """Serve `root` from a daemon thread; `server_address` has the real port, `close()` stops.

    `image_delay` seconds are added before each image response; with `tls` (certificate
    chain and key files) it serves HTTPS; with `hotlink_protect`, images requested
    without a Referer from the site are refused (403); `require` names headers every
    request must carry (``("Cookie", "consent=yes")``: that cookie among others).
    """
    server = DemoServer(root, (host, port), access_log, image_delay, tls, hotlink_protect, require)
    # A short poll interval keeps close() fast; shutdown() waits for the next poll.
    loop = threading.Thread(target=server.serve_forever, args=(0.05,), name="demosite", daemon=True)
    loop.start()
    return server
