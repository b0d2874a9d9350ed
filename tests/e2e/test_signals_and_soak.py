"""Signals on either node, and a soak run with downloaders killed and restarted."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.e2e.cluster import wait_for_text

SOAK = os.environ.get("CRAWLER_SOAK") == "1"  # the long soak: run by hand


def test_sigterm_on_a_downloader_hands_back_its_work_and_exits_0(cluster, tmp_path):
    truth = cluster.serve_site(image_delay=0.05, pages=8, images=80, seed=31)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    leaving = cluster.downloader("leaving", out, concurrency=4)
    wait_for_text(out / "progress.log", "event=stored")
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=20) == 0, cluster.output("leaving")
    err = (cluster.logs / "leaving.err").read_text()
    assert "stopping" in err and "Traceback" not in err
    wait_for_text(out / "progress.log", "event=node_left node=leaving")

    cluster.downloader("staying", out)
    codes = cluster.wait_all(["harvester", "staying"])
    assert codes == {"harvester": 0, "staying": 0}, cluster.output("harvester")
    cluster.check(truth, out, nodes=2, max_gets=2)


def test_a_second_signal_stops_the_harvester_at_once(cluster, tmp_path):
    cluster.serve_site(pages=4, images=20, seed=32)
    out = tmp_path / "downloads"
    harvester = cluster.harvester(out)
    wait_for_text(out / "progress.log", "event=queued")
    harvester.send_signal(signal.SIGINT)
    harvester.send_signal(signal.SIGINT)
    assert harvester.wait(timeout=10) == 130
    assert "Traceback" not in (cluster.logs / "harvester.err").read_text()


@pytest.mark.parametrize(
    ("images", "seconds"), [(4000, 300.0)] if SOAK else [(600, 20.0)], ids=["soak"]
)
def test_soak_with_downloaders_killed_and_restarted(cluster, tmp_path, images, seconds, capsys):
    truth = cluster.serve_site(image_delay=0.02, pages=30, images=images, seed=33)
    out = tmp_path / "downloads"
    fast = {**cluster.env, "CRAWLER_LEASE_SECONDS": "8", "CRAWLER_NODE_TIMEOUT": "4"}
    cluster.harvester(out, env=fast)
    harvester = cluster.started["harvester"]
    rng = random.Random(7)
    kills = 0
    cluster.downloader("steady", out, concurrency=4)
    # A victim started just as the crawl ends finds no harvester: let it give up.
    cluster.env = {**cluster.env, "CRAWLER_WAIT_FOR_HARVESTER": "5"}
    generation = 0
    victim = cluster.downloader(f"victim-{generation}", out, concurrency=8)
    deadline = time.monotonic() + seconds
    while harvester.poll() is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 2.0))
        if harvester.poll() is not None:
            break
        victim.kill()  # kill -9, mid-download
        victim.wait(timeout=10)
        kills += 1
        generation += 1
        victim = cluster.downloader(f"victim-{generation}", out, concurrency=8)
    # The killing stops after ``seconds``; then the crawl must finish on its own.
    codes = cluster.wait_all(["harvester", "steady", f"victim-{generation}"], timeout=180)
    assert codes["harvester"] == codes["steady"] == 0, cluster.output("harvester")
    assert codes[f"victim-{generation}"] in (0, 2), cluster.output(f"victim-{generation}")
    assert kills >= 3, f"only {kills} kills: make the run longer"
    records = cluster.check(truth, out, nodes=None, max_gets=kills + 1)["records"]
    gets = sum(
        1 for line in cluster.access_log.read_text().splitlines() if line.startswith("GET /img/")
    )
    with capsys.disabled():
        print(
            f"\n[soak] {len(truth['images'])} images, {kills} downloaders killed with -9, "
            f"0 lost ({len(records)} manifest records), "
            f"{gets - len(truth['images']) - len(truth['broken_images'])} extra image GETs, "
            f"stored files = distinct contents = {truth['distinct_contents']}"
        )


def test_sigterm_ends_a_node_within_its_grace_even_when_the_harvester_hangs(cluster, tmp_path):
    cluster.serve_site(image_delay=0.05, pages=6, images=60, seed=34)
    out = tmp_path / "downloads"
    harvester = cluster.harvester(out)
    node = cluster.downloader("node", out, concurrency=4)
    wait_for_text(out / "progress.log", "event=stored")
    harvester.send_signal(signal.SIGSTOP)  # it answers nothing from now on
    try:
        time.sleep(0.5)
        signalled = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, cluster.output("node")
        # One grace of 10 s for the whole stop, plus the process's own exit.
        assert time.monotonic() - signalled < 13
        assert "Traceback" not in (cluster.logs / "node.err").read_text()
    finally:
        harvester.send_signal(signal.SIGCONT)
