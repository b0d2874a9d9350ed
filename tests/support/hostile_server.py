"""A real HTTP server on loopback that misbehaves on purpose, one route per trick."""

from __future__ import annotations

import gzip
import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

from PIL import Image

from crawler.demo.server import LocalHTTPServer


def png_bytes(size: tuple[int, int] = (8, 8), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


PNG = png_bytes()
# 64 MiB of zeros compress to about 64 KiB: a client that inflates it whole pays 64 MiB.
GZIP_BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
ENDLESS_LIMIT = 256 * 1024 * 1024  # the "endless" body stops here, in case a client reads on


class HostileServer(LocalHTTPServer):
    def __init__(self, host: str, redirect_target: str = "") -> None:
        super().__init__((host, 0), _Handler)
        self.redirect_target = redirect_target
        self.hits: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up on an endless or trickling body are the point: stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        self.server.hits.append(path)
        try:
            if path == "/image.png" or path.endswith("passwd"):
                self.send(200, PNG, "image/png")
            elif path == "/endless":
                self._endless()
            elif path == "/trickle":
                self._trickle()
            elif path == "/lying-length":
                self.send(200, PNG[:40], "image/png", Content_Length=str(len(PNG)))
                self.close_connection = True
            elif path == "/gzip-bomb":
                self.send(200, GZIP_BOMB, "image/png", Content_Encoding="gzip")
            elif path == "/html-as-jpeg":
                self.send(200, b"<!doctype html><title>404</title>Not found", "image/jpeg")
            elif path == "/json-as-png":
                self.send(200, b'{"error": "no such image"}', "image/png")
            elif path == "/redirect-elsewhere":
                self.send(302, b"", "text/plain", Location=self.server.redirect_target)
            elif path == "/redirect-file":
                self.send(302, b"", "text/plain", Location="file:///etc/passwd")
            elif path.startswith("/loop/"):
                step = int(path.rsplit("/", 1)[1])
                self.send(302, b"", "text/plain", Location=f"/loop/{step + 1}")
            elif path == "/deep.html":
                body = b"<html><body>" + b"<div>" * 50_000 + b'<img src="/image.png">'
                self.send(200, body, "text/html")
            elif path == "/huge.html":
                filler = b"<p>" + b"x" * 1000 + b"</p>\n"
                body = b'<html><body><img src="/image.png">' + filler * 20_000
                self.send(200, body, "text/html")
            elif path == "/junk.html":
                self.send(200, bytes(range(256)) * 4096, "text/html")
            elif path == "/bad-utf8.html":
                body = b'<html><body>caf\xe9 \xff\xfe<img src="/image.png"> \xc3(</body></html>'
                self.send(200, body, "text/html; charset=utf-8")
            elif path == "/image-as-html":
                self.send(200, PNG, "text/html")
            else:
                self.send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.close_connection = True
        chunk = PNG + b"\0" * (64 * 1024)
        sent = 0
        while sent < ENDLESS_LIMIT:
            self.wfile.write(chunk)
            sent += len(chunk)

    def _trickle(self) -> None:
        body = PNG + b"\0" * 100
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body[:60]:  # at most 60 * 0.05 s = 3 s, then the client has left
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)
        self.close_connection = True
