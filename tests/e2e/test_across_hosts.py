"""The same crawl across two hosts: Linux network namespaces joined by a veth pair.

The harvester and the web site live in one namespace, the downloader nodes in the
other, each writing to its own output folder, so tasks, results and images really
cross a network link. Needs root and ``ip netns``; skips (saying why) only when the
namespaces cannot be created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.test_tls import harvester_flags, keygen, node_flags

# A /30 that exists only between the two namespaces this test creates.
HARVESTER_IP, DOWNLOADER_IP = "10.231.77.1", "10.231.77.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = str(os.getpid())[-6:]
    harvester_ns, downloader_ns = f"crawl-h{tag}", f"crawl-d{tag}"
    try:
        _ip("netns", "add", harvester_ns)
        _ip("netns", "add", downloader_ns)
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", harvester_ns], capture_output=True)
        pytest.skip(f"cannot create network namespaces: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", f"vh{tag}", "type", "veth", "peer", "name", f"vd{tag}")
        _ip("link", "set", f"vh{tag}", "netns", harvester_ns)
        _ip("link", "set", f"vd{tag}", "netns", downloader_ns)
        for ns, dev, address in (
            (harvester_ns, f"vh{tag}", HARVESTER_IP),
            (downloader_ns, f"vd{tag}", DOWNLOADER_IP),
        ):
            _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield (["ip", "netns", "exec", harvester_ns], ["ip", "netns", "exec", downloader_ns])
    finally:
        for ns in (harvester_ns, downloader_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_crawl_across_two_network_namespaces(two_hosts, tmp_path: Path, tls: bool):
    in_harvester_host, in_downloader_host = two_hosts
    cluster = Cluster(tmp_path, in_harvester_host, in_downloader_host, HARVESTER_IP)
    harvester_tls, node_tls = [], []
    if tls:  # the harvester's certificate names the address nodes connect to
        pki = tmp_path / "pki"
        keygen(pki, HARVESTER_IP)
        harvester_tls, node_tls = harvester_flags(pki), node_flags(pki)
    try:
        # 0.1 s per image: the first node to connect must not finish before the second joins.
        truth = cluster.serve_site(image_delay=0.1, pages=12, images=90, seed=11)
        harvester_out, downloader_out = tmp_path / "harvester", tmp_path / "downloader"
        cluster.harvester(harvester_out, *harvester_tls)
        for name in ("remote-a", "remote-b"):
            cluster.downloader(name, downloader_out, *node_tls)
        codes = cluster.wait_all(["harvester", "remote-a", "remote-b"])
        assert codes == {"harvester": 0, "remote-a": 0, "remote-b": 0}, {
            name: cluster.output(name) for name in codes
        }
        cluster.check(truth, harvester_out, [downloader_out], nodes=2)
        assert cluster.listen == f"{HARVESTER_IP}:5599"
        assert not list(harvester_out.glob("10.*")), "images belong on the downloader host"
        assert list(downloader_out.glob(f"{HARVESTER_IP}_*")), "no images on the downloader"
        warned = "without TLS" in (cluster.logs / "harvester.err").read_text()
        assert warned is not tls  # serving on 10.231.77.1 in clear is worth one warning
    finally:
        cluster.stop_all()
