"""A crawl whose wire is TLS: `crawler keygen --tls`, then a harvester, downloader nodes
(gevent, two processes) and `crawler status`, each with the --tls-* flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import Cluster, wait_for_text


def keygen(folder: Path, *hosts: str) -> str:
    extra = [arg for host in hosts for arg in ("--host", host)]
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "keygen", "--tls", str(folder), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def harvester_flags(pki: Path) -> list[str]:
    return [
        "--tls-cert",
        str(pki / "harvester.pem"),
        "--tls-key",
        str(pki / "harvester-key.pem"),
        "--tls-ca",
        str(pki / "ca.pem"),
    ]


def node_flags(pki: Path) -> list[str]:
    return [
        "--tls-cert",
        str(pki / "node.pem"),
        "--tls-key",
        str(pki / "node-key.pem"),
        "--tls-ca",
        str(pki / "ca.pem"),
    ]


def status(cluster: Cluster, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "status", "--connect", cluster.listen, *flags],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_crawl_over_mutual_tls(cluster: Cluster, tmp_path: Path) -> None:
    pki, other = tmp_path / "pki", tmp_path / "other"
    printed = keygen(pki)
    assert f"--tls-cert {pki / 'harvester.pem'}" in printed
    assert f"--tls-cert {pki / 'node.pem'}" in printed
    keygen(other)
    truth = cluster.serve_site(pages=6, images=60, seed=3, image_delay=0.05)
    out = tmp_path / "downloads"
    cluster.harvester(out, *harvester_flags(pki))
    wait_for_text(out / "progress.log", "event=crawl_started")

    # A node without a certificate is turned away, once, with one line; so is a
    # `crawler status` that trusts another CA.
    cluster.downloader("no-cert", tmp_path / "no-cert", "--tls-ca", str(pki / "ca.pem"))
    refused = status(cluster, "--tls-ca", str(other / "ca.pem"))
    assert refused.returncode == 2
    assert "showed a certificate we do not trust" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert cluster.wait_all(["no-cert"], timeout=60) == {"no-cert": 2}
    assert "refused this node's certificate" in cluster.output("no-cert")

    cluster.downloader("node-a", out, *node_flags(pki), "--processes", "2", concurrency=4)
    running = status(cluster, "--json", *node_flags(pki))
    assert running.returncode == 0, running.stderr
    codes = cluster.wait_all(["harvester", "node-a"])
    assert codes == {"harvester": 0, "node-a": 0}, {n: cluster.output(n) for n in codes}
    cluster.check(truth, out, nodes=2)  # node-a's two processes; no-cert never joined

    log = (out / "progress.log").read_text()
    # One event: auth_failed is throttled per peer host, and both came from 127.0.0.1.
    assert log.count("event=auth_failed") == 1 and 'reason="tls: ' in log
    harvester_err = (cluster.logs / "harvester.err").read_text()
    assert "without TLS" not in harvester_err  # loopback: no warning either way
    for name in ("harvester", "node-a", "no-cert"):
        assert "BEGIN" not in cluster.output(name) and "Traceback" not in cluster.output(name)


def test_tls_mistakes_are_one_line(tmp_path: Path) -> None:
    def crawler(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CRAWLER_AUTHKEY": "k" * 24}
        return subprocess.run(
            [sys.executable, "-m", "crawler", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = str(tmp_path / "missing.pem")
    # Two node processes: the files are checked once, before either starts.
    node = crawler("download", "--processes", "2", "--tls-cert", missing, "--tls-ca", missing)
    assert node.returncode == 2
    assert node.stderr.strip().splitlines() == [
        f"crawler download: error: tls_ca: cannot read {missing}: No such file or directory"
    ]
    out = tmp_path / "out"
    harvester = crawler("harvest", "http://127.0.0.1:9/", "--tls-ca", missing, "--out", str(out))
    assert harvester.returncode == 2 and "needs its own too" in harvester.stderr
    assert not out.exists()  # nothing made: no state, no lock
    assert crawler("keygen", "--host", "x").stderr.strip() == (
        "crawler keygen: error: --host goes with --tls DIR"
    )
