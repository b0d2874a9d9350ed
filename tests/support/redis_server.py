"""Real ``redis-server`` processes for tests (Debian's package; ``scripts/test.sh``
installs it): one server with AOF on a free port of 127.0.0.1 in its own folder, a
restart of it on the same folder, and a 3-master Redis Cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None and not __import__("os").environ.get("CI"),
    reason="redis-server is not installed (scripts/test.sh installs it)",
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """One ``redis-server`` in ``folder`` on ``port``, AOF ``appendfsync everysec``."""

    folder: Path
    port: int = field(default_factory=free_port)
    password: str = ""
    extra: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--daemonize", "no", "--logfile", str(self.folder / "redis.log")),
            *(("--requirepass", self.password) if self.password else ()),
            *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password or None, socket_timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None:
                    log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited: {log}") from None
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer in 20 s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: what a crash of the Redis machine's process looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def redis_server(folder: Path, password: str = "") -> Iterator[RedisServer]:
    server = RedisServer(folder, password=password)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_cluster(folder: Path, masters: int = 3) -> Iterator[list[RedisServer]]:
    """``masters`` cluster-mode servers joined into one cluster (all slots covered)."""
    assert REDIS_CLI is not None
    servers = []
    try:
        for index in range(masters):
            server = RedisServer(
                folder / f"node{index}",
                extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            )
            server.start()
            servers.append(server)
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        client = redis.Redis(port=servers[0].port, socket_timeout=2)
        deadline = time.monotonic() + 30
        while client.cluster("info").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up in 30 s")
            time.sleep(0.1)
        yield servers
    finally:
        for server in servers:
            server.stop()
