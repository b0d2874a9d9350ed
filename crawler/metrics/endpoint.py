"""The ``/metrics`` endpoint: a registry served over HTTP in the Prometheus text
format (``prometheus_client.make_wsgi_app``) from a thread of its own.

It notes when the last scrape it answered began, so that a process at its end can
wait until its final figures have been read (``wait_for_scrape``) before it exits.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import Collector

from crawler.errors import ConfigError
from crawler.metrics.base import never

CANCEL_POLL = 0.2  # seconds between looks at ``cancelled`` while waiting for a scrape


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class MetricsEndpoint:
    """Serves ``registry`` on ``host:port`` until ``stop``. A port in use or an address
    this machine does not have is a ``ConfigError`` that names them."""

    def __init__(self, host: str, port: int, registry: Collector) -> None:
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        app = make_wsgi_app(registry)
        self._last_began = -1.0  # monotonic start of the last scrape answered
        self._scraped = threading.Condition()

        def counted(environ: dict, start_response: Any) -> Any:
            began = time.monotonic()
            body = app(environ, start_response)  # the figures are read in here
            if environ.get("PATH_INFO", "/") in ("/", "/metrics"):
                with self._scraped:
                    self._last_began = max(self._last_began, began)
                    self._scraped.notify_all()
            return body

        try:
            self._httpd = make_server(
                host, port, counted, _Server6 if ":" in host else _Server, _Quiet
            )
        except OSError as exc:
            reason = str(exc.strerror or exc)
            raise ConfigError(
                f"metrics: cannot listen on {self.where}: {reason[:1].lower()}{reason[1:]}"
            ) from None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.2,), name="metrics", daemon=True
        )
        self._thread.start()

    def wait_for_scrape(self, seconds: float, cancelled: Callable[[], bool] = never) -> bool:
        """Wait until a scrape that began from now on has been answered (so it read
        the figures as they are now), at most ``seconds``, and not once ``cancelled()``
        (a signal asked the process to stop); returns whether one was."""
        now = time.monotonic()
        deadline = now + seconds
        with self._scraped:
            while self._last_began < now:
                left = deadline - time.monotonic()
                if left <= 0 or cancelled():
                    return False
                self._scraped.wait(min(left, CANCEL_POLL))
        return True

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)
