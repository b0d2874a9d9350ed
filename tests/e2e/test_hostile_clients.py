"""A real crawl while strangers hammer the harvester's port.

Garbage bytes, a wrong key, a pickle exploit, connections that never speak and a burst
of connections: none of them gets in or stops the downloaders, the progress log says
who was turned away, and the key is written nowhere.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import threading
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from crawler.errors import AuthKeyError, CrawlerError
from crawler.wire.manager_client import ManagerWire
from tests.e2e.cluster import Cluster, wait_for_text
from tests.wire.test_manager_client import CreatesMarker

GARBAGE = b"GET / HTTP/1.1\r\nHost: harvester\r\n\r\n"
WRONG_KEY = b"a-stranger-who-guessed-wrong"
HALF_OPEN = 5
BURST = 100
PEST_ROUNDS = 100  # a bound on the attacks repeated while the crawl runs


def send_garbage(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(GARBAGE)


def try_wrong_key(address: tuple[str, int]) -> None:
    with pytest.raises(AuthKeyError):
        ManagerWire(address, WRONG_KEY)


def send_pickles(address: tuple[str, int], key: bytes, marker: Path) -> None:
    """The exploit twice: raw, as the answer to the challenge, and after a real handshake."""
    payload = pickle.dumps(CreatesMarker(marker))
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(struct.pack("!i", len(payload)) + payload)
        with contextlib.suppress(OSError):
            sock.recv(4096)
    keyed = Client(address, authkey=key)
    try:
        keyed.send(CreatesMarker(marker))
        assert keyed.poll(5) and b"#TRACEBACK" in keyed.recv_bytes()
    finally:
        keyed.close()


def pester(address: tuple[str, int], stop: threading.Event, errors: list[BaseException]) -> None:
    """Garbage and wrong keys, again and again, until the crawl is over."""
    for _ in range(PEST_ROUNDS):
        if stop.wait(0.1):
            return
        try:
            send_garbage(address)
            try_wrong_key(address)
        except (OSError, CrawlerError):
            pass  # the harvester may be finishing: it owes strangers nothing
        except BaseException as exc:
            errors.append(exc)
            return


def test_a_crawl_survives_hostile_clients(cluster: Cluster, tmp_path: Path) -> None:
    # 0.1 s per image: the first node to connect must not finish before the second joins.
    truth = cluster.serve_site(image_delay=0.1, pages=8, images=60)
    out = tmp_path / "downloads"
    key = cluster.env["CRAWLER_AUTHKEY"]
    marker = tmp_path / "pickle-was-loaded"
    cluster.harvester(out, "--allow-private")
    wait_for_text(cluster.logs / "harvester.err", "serving tasks on")
    host, port = cluster.listen.rsplit(":", 1)
    address = (host, int(port))

    send_garbage(address)
    try_wrong_key(address)
    send_pickles(address, key.encode(), marker)
    idle = [socket.create_connection(address, timeout=5) for _ in range(HALF_OPEN + BURST)]
    stop, errors = threading.Event(), []
    pest = threading.Thread(target=pester, args=(address, stop, errors), daemon=True)
    try:
        pest.start()
        for name in ("node-a", "node-b"):
            cluster.downloader(name, out, "--allow-private")
        codes = cluster.wait_all(["harvester", "node-a", "node-b"])
    finally:
        stop.set()
        pest.join(10)
        for sock in idle:
            sock.close()

    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0}, {
        name: cluster.output(name) for name in codes
    }
    assert not errors, errors
    events = cluster.check(truth, out, nodes=2)["events"]
    # One event per stranger's address and 10 s: here, one address and a short crawl.
    turned_away = [e for e in events if e["event"] == "auth_failed"]
    assert turned_away, "no auth_failed event in the progress log"
    assert all(e["peer"].startswith("127.0.0.1:") for e in turned_away)
    assert {e["reason"] for e in turned_away} <= {"wrong key", "protocol error", "timeout"}
    assert not marker.exists(), "the harvester loaded a pickle"
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert not leaks, f"the key was written to {leaks}"
