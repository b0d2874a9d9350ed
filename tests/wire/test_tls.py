"""Tests for TLS on the manager wire: a real server and client on 127.0.0.1, with
certificates from ``crawler keygen --tls`` and a relay that records every byte."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.broker.broker import Broker
from crawler.config import TlsConfig
from crawler.errors import ConfigError, NotAHarvester, TlsError
from crawler.records import Result
from crawler.wire import clear_on_network
from crawler.wire.base import RecordClient
from crawler.wire.certs import harvester_names, write_tls_files
from crawler.wire.manager_client import ManagerWire
from crawler.wire.manager_server import BrokerServer, ServerLimits
from crawler.wire.tls import client_context, server_context
from tests.wire.test_manager_client import KEY, SLACK, call_within, stranger

SECRET_URL = "http://secret-gallery.example/private/cat-4711.png"
SHORT = 1.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tls_files(tmp_path_factory.mktemp("tls") / "pki").folder


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tls_files(tmp_path_factory.mktemp("tls") / "other").folder


def harvester_tls(pki: Path, mutual: bool = True) -> TlsConfig:
    ca = str(pki / "ca.pem") if mutual else ""
    return TlsConfig(str(pki / "harvester.pem"), str(pki / "harvester-key.pem"), ca)


def node_tls(pki: Path, with_cert: bool = True) -> TlsConfig:
    if not with_cert:
        return TlsConfig(tls_ca=str(pki / "ca.pem"))
    return TlsConfig(str(pki / "node.pem"), str(pki / "node-key.pem"), str(pki / "ca.pem"))


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def __call__(self, name: str, fields: dict) -> None:
        self.seen.append((name, fields))


@contextlib.contextmanager
def serving(
    tls: TlsConfig | None, host: str = "127.0.0.1"
) -> Iterator[tuple[BrokerServer, Broker, Events]]:
    broker = Broker(lease_seconds=60.0, max_attempts=3, node_timeout=30.0)
    events = Events()
    broker.note_event = events  # type: ignore[method-assign]
    limits = ServerLimits(handshake_timeout=SHORT, max_connections=16, event_interval=0.0)
    context = server_context(tls) if tls else None
    server = BrokerServer(broker, (host, 0), KEY, limits, context)
    server.start()
    try:
        yield server, broker, events
    finally:
        server.stop()


def wire_to(address: tuple[str, int], tls: TlsConfig | None, timeout: float = 5.0) -> ManagerWire:
    context = client_context(tls) if tls else None
    return call_within(timeout + SLACK, ManagerWire, address, KEY, timeout, context)


class Relay:
    """A TCP relay on 127.0.0.1 that keeps every byte it passes, both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.seen = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def stored_result(task_id: int, url: str, node: str, path: str) -> Result:
    """What a node reports for an image it stored under ``path``."""
    return Result(
        id=task_id,
        url=url,
        node=node,
        outcome="stored",
        status=200,
        bytes=3,
        sha256="ab" * 32,
        content_type="image/png",
        path=path,
        width=1,
        height=1,
    )


def lease_and_report(broker: Broker, address: tuple[str, int], tls: TlsConfig | None) -> None:
    broker.add_tasks([(SECRET_URL, "http://secret-gallery.example/private/", "img")])
    client = RecordClient(wire_to(address, tls))
    try:
        call_within(5, client.join, "node-1", {"pid": 1})
        (task,) = call_within(5, client.lease_batch, "node-1", 10, 0).tasks
        assert task.url == SECRET_URL
        result = stored_result(task.id, SECRET_URL, "node-1", "ab/abab.png")
        assert call_within(5, client.report_results, "node-1", [result]) == 1
    finally:
        client.close()
    assert broker.status()["queue"]["stored"] == 1


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "tls"])
def test_what_crosses_the_network_is_encrypted_only_with_tls(pki: Path, encrypted: bool) -> None:
    with serving(harvester_tls(pki) if encrypted else None) as (server, broker, _):
        relay = Relay(server.address)
        try:
            lease_and_report(broker, relay.address, node_tls(pki) if encrypted else None)
        finally:
            relay.close()
    seen = bytes(relay.seen)
    assert len(seen) > 500  # the relay saw the conversation
    # The check can fail: in plain TCP the URL and the result cross in clear.
    assert (b"secret-gallery" in seen) is not encrypted
    assert (b"ab/abab.png" in seen) is not encrypted


def test_a_node_without_a_certificate_is_refused_by_a_mutual_tls_harvester(pki: Path) -> None:
    with serving(harvester_tls(pki)) as (server, _, events):
        with pytest.raises(TlsError, match="refused this node's certificate"):
            wire_to(server.address, node_tls(pki, with_cert=False))
        # Server side: one auth_failed event naming TLS, nothing else served (the
        # server's thread may log it just after the node has given up).
        deadline = time.monotonic() + 5
        while not events.seen and time.monotonic() < deadline:
            time.sleep(0.02)
    ((name, fields),) = events.seen
    assert name == "auth_failed" and fields["reason"].startswith("tls: "), fields


def test_without_a_ca_on_the_harvester_any_node_that_trusts_it_gets_to_the_key_check(
    pki: Path,
) -> None:
    with serving(harvester_tls(pki, mutual=False)) as (server, broker, _):
        lease_and_report(broker, server.address, node_tls(pki, with_cert=False))


def test_a_harvester_signed_by_another_ca_is_not_trusted(pki: Path, other_pki: Path) -> None:
    with (
        serving(harvester_tls(other_pki, mutual=False)) as (server, _, _events),
        pytest.raises(TlsError, match="certificate we do not trust") as raised,
    ):
        wire_to(server.address, node_tls(pki))
    assert "--tls-ca" in str(raised.value)


def test_a_harvester_certificate_for_other_names_is_not_trusted(pki: Path) -> None:
    assert "127.0.0.2" not in harvester_names(())
    with (
        serving(harvester_tls(pki), host="127.0.0.2") as (server, _, _events),
        pytest.raises(TlsError, match="--host NAME") as raised,
    ):
        wire_to(server.address, node_tls(pki))
    assert "127.0.0.2" in str(raised.value)


def test_a_node_signed_by_another_ca_is_refused(pki: Path, other_pki: Path) -> None:
    wrong = TlsConfig(
        str(other_pki / "node.pem"), str(other_pki / "node-key.pem"), str(pki / "ca.pem")
    )
    with (
        serving(harvester_tls(pki)) as (server, _, _events),
        pytest.raises(TlsError, match="refused this node's certificate"),
    ):
        wire_to(server.address, wrong)


def test_a_plain_node_meets_a_tls_harvester_with_a_hint(pki: Path) -> None:
    with serving(harvester_tls(pki)) as (server, _, _events):
        started = time.monotonic()
        with pytest.raises(NotAHarvester, match="--tls-cert needs --tls-ca here"):
            wire_to(server.address, None, timeout=SHORT)
    assert time.monotonic() - started < SHORT + SLACK


def test_a_tls_node_meets_a_plain_harvester_with_a_hint(pki: Path) -> None:
    with (
        serving(None) as (server, _, _events),
        pytest.raises(NotAHarvester, match=r"did not answer in TLS.*--tls-cert"),
    ):
        wire_to(server.address, node_tls(pki), timeout=SHORT)


def test_a_tls_node_meets_a_silent_server_within_its_deadline(pki: Path) -> None:
    with stranger(lambda sock: None) as address:
        started = time.monotonic()
        with pytest.raises(NotAHarvester, match="did not answer a TLS handshake within 1 s"):
            wire_to(address, node_tls(pki), timeout=SHORT)
    assert time.monotonic() - started < SHORT + SLACK


def test_a_peer_that_stalls_in_the_tls_handshake_is_cut_and_others_are_served(pki: Path) -> None:
    with serving(harvester_tls(pki)) as (server, broker, events):
        idle = socket.create_connection(server.address)
        try:
            idle.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
            lease_and_report(broker, server.address, node_tls(pki))
            idle.settimeout(SHORT + SLACK)
            assert idle.recv(100) == b""  # cut after the handshake timeout
        finally:
            idle.close()
    assert [name for name, _ in events.seen] == ["auth_failed"]
    assert events.seen[0][1]["reason"] == "timeout"


def test_unusable_tls_files_are_clear_errors(pki: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_cert: cannot read .*missing\.pem"):
        server_context(TlsConfig(str(tmp_path / "missing.pem"), str(pki / "harvester-key.pem")))
    loose = tmp_path / "loose-key.pem"
    loose.write_bytes((pki / "harvester-key.pem").read_bytes())
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError, match=r"refusing private key .*chmod 600"):
        server_context(TlsConfig(str(pki / "harvester.pem"), str(loose)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        client_context(TlsConfig(tls_ca=str(garbage)))
    mismatched = TlsConfig(str(pki / "harvester.pem"), str(pki / "node-key.pem"))
    with pytest.raises(ConfigError, match="not a PEM certificate and its private key") as raised:
        server_context(mismatched)
    assert "BEGIN" not in str(raised.value)
    with pytest.raises(ConfigError, match="needs its own too"):
        server_context(TlsConfig(tls_ca=str(pki / "ca.pem")))


def test_keygen_never_overwrites_and_keeps_keys_private(pki: Path) -> None:
    assert oct(os.stat(pki / "harvester-key.pem").st_mode & 0o777) == "0o600"
    assert oct(os.stat(pki / "node-key.pem").st_mode & 0o777) == "0o600"
    before = (pki / "ca.pem").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds ca\.pem"):
        write_tls_files(pki)
    assert (pki / "ca.pem").read_bytes() == before


def test_harvester_names_take_extra_names_and_addresses_once() -> None:
    names = harvester_names(["Harvester.LAN", "[fd00::5]", "10.0.0.5", "10.0.0.5"], "box")
    assert names == ("localhost", "127.0.0.1", "::1", "box", "harvester.lan", "fd00::5", "10.0.0.5")


def test_a_bad_host_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a host name nor an IP address"):
        write_tls_files(tmp_path / "pki", ["bad name!"])
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize(
    ("listen", "tls", "clear"),
    [
        ("127.0.0.1:5599", False, False),
        ("[::1]:5599", False, False),
        ("localhost:5599", False, False),
        ("0.0.0.0:5599", False, True),
        ("10.0.0.5:5599", False, True),
        ("harvester.lan:5599", False, True),
        ("0.0.0.0:5599", True, False),
        ("memory://x", False, False),
    ],
)
def test_clear_on_network(listen: str, tls: bool, clear: bool) -> None:
    settings = TlsConfig(tls_cert="cert.pem") if tls else TlsConfig()
    assert clear_on_network(listen, settings) is clear
