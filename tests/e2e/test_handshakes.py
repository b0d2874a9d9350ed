"""`crawler status` and `crawler download` pointed at a port that is no harvester.

A user who gives the wrong port gets one line saying so and exit code 2, within the
handshake timeout, instead of a command that waits for ever.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from crawler.wire.manager_client import HANDSHAKE_TIMEOUT
from tests.e2e.cluster import crawler_env, wait_for_text
from tests.wire.test_manager_client import SSH_BANNER, http_server, stranger

START_UP = 30.0  # seconds two Python processes may take to start on a loaded machine


def run_both(where: str, out: Path) -> dict[str, tuple[int, str, float]]:
    """Run `crawler status` and `crawler download` at ``where`` side by side; for each,
    the exit code, stderr and seconds taken. A command still running is a failure."""
    env = crawler_env()
    commands = {
        "status": ["status", "--connect", where],
        "download": ["download", "--connect", where, "--out", str(out), "--processes", "1"],
    }
    started = time.monotonic()
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "crawler", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    outcomes = {}
    try:
        for name, proc in running.items():
            remaining = max(started + HANDSHAKE_TIMEOUT + START_UP - time.monotonic(), 0.1)
            try:
                stdout, stderr = proc.communicate(timeout=remaining)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"crawler {name} still waits at {where}") from None
            outcomes[name] = (proc.returncode, stderr, time.monotonic() - started)
            assert env["CRAWLER_AUTHKEY"] not in stdout + stderr
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return outcomes


def assert_one_error_line(name: str, stderr: str, message: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"crawler {name}: error: {message}", stderr


def test_an_http_port_is_no_harvester(tmp_path):
    with http_server() as (host, port):
        outcomes = run_both(f"{host}:{port}", tmp_path / "out")

    message = (
        f"127.0.0.1:{port} did not answer the crawler handshake within "
        f"{HANDSHAKE_TIMEOUT:g} s: is it a crawler harvester (crawler harvest --listen ...)? "
        "One started with --tls-cert needs --tls-ca here"
    )
    for name, (code, stderr, seconds) in outcomes.items():
        assert code == 2, stderr
        assert_one_error_line(name, stderr, message)
        assert seconds >= HANDSHAKE_TIMEOUT
    assert len(outcomes["status"][1].strip().splitlines()) == 1


def test_a_server_that_answers_garbage_is_no_harvester(tmp_path):
    with stranger(lambda connection: connection.sendall(SSH_BANNER)) as (host, port):
        outcomes = run_both(f"{host}:{port}", tmp_path / "out")

    message = (
        f"127.0.0.1:{port} is not a crawler harvester (it answered 'SSH-2.0-OpenSSH_9.6\\r\\n')"
    )
    for name, (code, stderr, seconds) in outcomes.items():
        assert code == 2, stderr
        assert_one_error_line(name, stderr, message)
        assert seconds < HANDSHAKE_TIMEOUT, "garbage needs no wait for the deadline"


def test_a_node_whose_harvester_comes_back_with_another_key_ends_with_exit_2(cluster, tmp_path):
    cluster.serve_site(image_delay=0.2, pages=4, images=40, seed=51)
    out = tmp_path / "downloads"
    first = cluster.harvester(out)
    node = cluster.downloader("node", out, concurrency=2)
    wait_for_text(out / "progress.log", "event=stored")
    first.kill()
    first.wait(timeout=10)
    cluster.started.pop("harvester")
    cluster.harvester(out, env=crawler_env())  # the same port, another random key
    try:
        assert node.wait(timeout=START_UP) == 2, cluster.output("node")
    finally:
        cluster.stop_all()
    err = (cluster.logs / "node.err").read_text()
    assert "rejected our authkey" in err and "Traceback" not in err
