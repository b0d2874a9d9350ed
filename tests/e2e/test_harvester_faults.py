"""The harvester's own faults: killed between its manifest and state writes, or out of
disk, it stops (or dies) and a resume completes the crawl with exactly one manifest
line per URL and every stored file true to the server's bytes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, wait_for_text
from tests.e2e.conftest import needs_root
from tests.support.crashpoints import crash_at

RUN_BOUND = 120.0


def manifest_urls(out: Path) -> list[str]:
    return [json.loads(line)["url"] for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("point", ["before_manifest", "after_manifest", "after_state"])
def test_a_harvester_killed_at_each_crash_point_resumes_with_one_line_per_url(
    cluster: Cluster, tmp_path: Path, point: str
):
    truth = cluster.serve_site(image_delay=0.02, pages=6, images=60, seed=41)
    out = tmp_path / "downloads"
    # Killed (SIGKILL) the third time it passes the point: some batches are recorded.
    cluster.harvester(out, env=crash_at(cluster.env, point, 3))
    cluster.downloader("node", out, concurrency=4)
    assert cluster.wait_all(["harvester"], timeout=RUN_BOUND) == {"harvester": -9}
    before = manifest_urls(out)
    assert len(before) == len(set(before))

    cluster.started.pop("harvester")
    cluster.harvester(out)
    codes = cluster.wait_all(["harvester", "node"], timeout=RUN_BOUND)
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")
    urls = manifest_urls(out)
    assert len(urls) == len(set(urls)), "a URL has two manifest lines"
    assert urls[: len(before)] == before  # the resume appended, never rewrote
    cluster.check(truth, out, nodes=1, max_gets=2, harvester_killed=True)


@pytest.fixture
def small_disk(small_tmpfs) -> Path:  # type: ignore[no-untyped-def]
    return small_tmpfs("256k")


@needs_root
def test_a_harvester_whose_disk_fills_stops_cleanly_and_a_resume_completes(
    cluster: Cluster, tmp_path: Path, small_disk: Path
):
    truth = cluster.serve_site(pages=20, images=1500, seed=42)
    out = small_disk / "crawl"
    node_out = tmp_path / "node"
    cluster.harvester(out)
    cluster.downloader("node", node_out)
    codes = cluster.wait_all(["harvester"], timeout=RUN_BOUND)

    assert codes == {"harvester": 5}, cluster.output("harvester")
    err = (cluster.logs / "harvester.err").read_text()
    assert "cannot write the crawl's files" in err and "run the same command again" in err
    assert "Traceback" not in err
    urls = manifest_urls(out)
    assert len(urls) == len(set(urls))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    cluster.started.pop("harvester")
    cluster.harvester(out)
    codes = cluster.wait_all(["harvester", "node"], timeout=RUN_BOUND)
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")
    assert "Traceback" not in (cluster.logs / "node.err").read_text()
    cluster.check(truth, out, [node_out], nodes=1, max_gets=2, harvester_killed=True)


def test_a_start_that_fails_leaves_no_state_behind(cluster: Cluster, tmp_path: Path):
    cluster.serve_site(pages=2, images=4)
    out = tmp_path / "downloads"
    busy = subprocess.Popen(  # something else holds the port
        [
            "python3",
            "-c",
            "import socket,sys,time; s=socket.socket(); "
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)",
            cluster.listen.rsplit(":", 1)[1],
        ],
    )
    try:
        wait_for_port_taken(cluster.listen)
        cluster.harvester(out)
        assert cluster.wait_all(["harvester"], timeout=30) == {"harvester": 2}
    finally:
        busy.kill()
        busy.wait()
    assert "cannot listen on" in (cluster.logs / "harvester.err").read_text()
    assert not (out / ".state" / "crawl.db").exists()


def wait_for_port_taken(listen: str) -> None:
    import socket
    import time

    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {listen}")


def test_a_crawl_whose_every_seed_fails_exits_3(cluster: Cluster, tmp_path: Path):
    cluster.serve_site(pages=2, images=4)
    cluster.site_url = cluster.site_url + "missing/"  # every seed is a 404
    out = tmp_path / "downloads"
    cluster.harvester(out)
    assert cluster.wait_all(["harvester"], timeout=60) == {"harvester": 3}
    stdout = (cluster.logs / "harvester.out").read_text()
    assert "crawl ended without fetching a page (every seed failed)" in stdout
    wait_for_text(out / "progress.log", "event=crawl_finished")
