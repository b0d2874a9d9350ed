"""`crawler status` against a running harvester, as an operator would use it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.cluster import crawler_env, free_port, wait_for_text


def status(cluster, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "status", "--connect", cluster.listen, *args],
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_of_a_running_crawl(cluster, tmp_path):
    truth = cluster.serve_site(pages=4, images=40, seed=2, image_delay=0.3)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    cluster.downloader("node-a", out, concurrency=2)
    wait_for_text(out / "progress.log", "event=stored")
    wait_for_text(out / "progress.log", "event=totals")

    done = status(cluster, "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    queue = figures["queue"]
    assert queue["tasks"] == len(truth["images"]) + len(truth["broken_images"])
    assert queue["stored"] >= 1 and queue["leased"] >= 1 and queue["nodes"] == 1
    assert queue["waiting"] + queue["leased"] + queue["stored"] + queue["failed"] == queue["tasks"]
    (node,) = figures["nodes"]
    assert node["node"] == "node-a" and node["last_seen_s"] < 10 and node["leased"] >= 1
    assert figures["crawl"]["pages"] >= 1 and figures["done"] is False
    (host,) = figures["hosts"]
    # A host's "in flight" counts leased tasks: the node's pool (2), its next batch (2),
    # and finished results its reporter has not sent yet (at most as many again).
    assert host["host"] == cluster.site_url.split("/")[2] and 1 <= host["in_flight"] <= 8
    assert host["in_flight"] == queue["leased"]

    text = status(cluster)
    assert text.returncode == 0, text.stderr
    assert f"harvester {cluster.listen}: running" in text.stdout
    assert "node-a" in text.stdout and "in flight" in text.stdout
    assert cluster.env["CRAWLER_AUTHKEY"] not in text.stdout + done.stdout

    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    # The status connection did not count as a node.
    assert "event=node_joined" in (out / "progress.log").read_text()
    assert (out / "progress.log").read_text().count("event=node_joined") == 1


def test_status_mistakes_are_one_line(cluster):
    nobody = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "status", "--connect", nobody],
        env=crawler_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "not reachable" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    cluster.serve_site(pages=1, images=2)
    cluster.harvester(cluster.tmp / "out")
    wait_for_text(cluster.tmp / "out" / "progress.log", "event=crawl_started")
    wrong = status(cluster, env=crawler_env())  # a different random key
    assert wrong.returncode == 2 and "rejected our authkey" in wrong.stderr
    assert "Traceback" not in wrong.stderr
