"""The whole product on one machine: a real site, a harvester, downloader processes."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e.cluster import wait_for_text


def test_harvester_and_two_downloaders_store_every_image_once(cluster, tmp_path):
    truth = cluster.serve_site(pages=20, images=160, seed=7)
    out = tmp_path / "downloads"
    # Downloaders first: they must wait for the harvester, not give up.
    for name in ("node-a", "node-b"):
        cluster.downloader(name, out)
    for name in ("node-a", "node-b"):
        wait_for_text(cluster.logs / f"{name}.err", "not reachable")
    cluster.harvester(out, "--max-depth", "4")
    cluster.crawler("tail", ["tail", str(out / "progress.log")], cluster.env)

    codes = cluster.wait_all(["harvester", "node-a", "node-b", "tail"])
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0, "tail": 0}, {
        name: cluster.output(name) for name in codes
    }
    cluster.check(truth, out, nodes=2)

    summary = (cluster.logs / "harvester.out").read_text()
    assert f"{len(truth['images']) + len(truth['broken_images'])} images found" in summary
    assert f"{len(truth['images'])} stored, {len(truth['broken_images'])} failed" in summary
    node_a = (cluster.logs / "node-a.err").read_text()
    assert "waiting for it" in node_a and "connected to harvester" in node_a
    tail_out = (cluster.logs / "tail.out").read_text()
    assert "event=crawl_finished" in tail_out
    assert f"stored {len(truth['images'])}" in tail_out and "[finished]" in tail_out


def test_download_node_with_several_processes(cluster, tmp_path):
    truth = cluster.serve_site(pages=6, images=40, seed=3)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    cluster.crawler(
        "node",
        [
            "download",
            "--connect",
            cluster.listen,
            "--out",
            str(out),
            "--processes",
            "2",
            "--concurrency",
            "4",
            "--allow-private",
        ],
        cluster.env,
    )
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("node")
    result = cluster.check(truth, out, nodes=2)
    # One node, two processes: each child reports as <node id>-<index>.
    stored_by = {r["node"] for r in result["records"] if r["outcome"] == "stored"}
    assert len({node.rsplit("-", 1)[0] for node in stored_by}) == 1
    assert {node.rsplit("-", 1)[1] for node in stored_by} == {"0", "1"}


def test_a_killed_downloader_takes_no_task_with_it(cluster, tmp_path):
    """kill -9 a node mid-crawl: its leases come back, another node finishes the work."""
    truth = cluster.serve_site(image_delay=0.05, pages=8, images=80, seed=5)
    out = tmp_path / "downloads"
    fast_expiry = {**cluster.env, "CRAWLER_LEASE_SECONDS": "8", "CRAWLER_NODE_TIMEOUT": "3"}
    cluster.harvester(out, env=fast_expiry)
    doomed = cluster.downloader("doomed", out, concurrency=4)
    wait_for_text(out / "progress.log", "event=stored", timeout=60)
    # More leases than it has in flight (4): some are surely held when it dies.
    cluster.wait_for_leases("doomed", more_than=4)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    killed_at = time.monotonic()
    cluster.downloader("rescuer", out, concurrency=8)

    codes = cluster.wait_all(["harvester", "rescuer"])
    assert codes == {"harvester": 0, "rescuer": 0}, cluster.output("harvester")
    records = cluster.check(
        truth,
        out,
        nodes=2,
        max_gets=2,
    )["records"]
    by_node = {r["node"] for r in records if r["outcome"] == "stored"}
    assert by_node == {"doomed", "rescuer"}, "both nodes should have stored images"
    retried = [r for r in records if r["leases"] == 2]
    # A lease lost with its node is not a counted attempt.
    assert all(r["attempts"] == 1 for r in records if r["outcome"] == "stored")
    assert retried, "the tasks the killed node held should have been leased again"
    events = (out / "progress.log").read_text()
    assert "event=node_lost node=doomed" in events
    assert time.monotonic() - killed_at < 60


@pytest.mark.parametrize(("flags", "pages"), [(["--max-pages", "3"], 3), (["--max-depth", "0"], 1)])
def test_page_limits_hold(cluster, tmp_path, flags, pages):
    cluster.serve_site(pages=10, images=20, seed=41)
    out = tmp_path / "downloads"
    cluster.harvester(out, *flags)
    cluster.downloader("node", out)
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")
    page_gets = [
        line
        for line in cluster.access_log.read_text().splitlines()
        if line.startswith("GET ") and line.split()[1].endswith(".html")
    ]
    assert len(page_gets) == pages, page_gets
    log = (out / "progress.log").read_text()
    assert log.count("event=page_fetched ") == pages
