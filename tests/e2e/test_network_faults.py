"""Faults on the network between machines: the harvester (and the site) in one network
namespace, each downloader node in its own, joined by links that lose, delay,
reorder and cut packets (``tests/support/linkem.py``: netem's faults, in user space,
since this kernel has no ``sch_netem``).

In each case the crawl completes with 0 tasks lost, every image stored once, and the
images fetched twice within the in-flight window of the nodes that lost their leases
(plus the fetches a lost packet made time out, which are retried). Needs root and
``ip``; skips, saying why, only when the namespaces or TUN devices cannot be had.
"""

from __future__ import annotations

import collections
import os
import shutil
import time
from pathlib import Path

import pytest

from crawler.output.progress import parse_line
from tests.e2e.cluster import Cluster, wait_for_text
from tests.e2e.test_faults import stored_by
from tests.support.linkem import Namespaces, exec_in, ip

HARVESTER = "10.231.80.1"
NODES = {"node-a": ("10.231.80.1", "10.231.80.2"), "node-b": ("10.231.81.1", "10.231.81.2")}
CONCURRENCY = 2  # per node; a node leases at most its concurrency and one batch more
WINDOW = 2 * CONCURRENCY
PARTITION_SECONDS = 30.0


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: the emulated links need TUN devices")
    spaces = Namespaces()
    try:
        harvester = spaces.add("h")
        links = {}
        for key, (name, (here, there)) in zip("ab", NODES.items(), strict=True):
            ns = spaces.add(key)
            links[name] = spaces.link(key, harvester, here, ns, there)
            ip("-n", ns, "route", "add", "default", "dev", links[name].device("b"))
        yield harvester, links
    finally:
        spaces.close()


def run_crawl(tmp_path: Path, harvester_ns: str, links: dict, env: dict, **site: float):
    """Serve the site, start the harvester and, once it listens, the nodes."""
    cluster = Cluster(tmp_path, exec_in(harvester_ns), (), HARVESTER)
    truth = cluster.serve_site(**site)
    out = tmp_path / "harvester"
    cluster.harvester(out, env={**cluster.env, **env})
    wait_for_text(cluster.logs / "harvester.err", "serving tasks on")
    outs = {}
    for name, link in links.items():
        outs[name] = tmp_path / name
        cluster.downloader(name, outs[name], concurrency=CONCURRENCY, host=exec_in(link.ns_b))
    return cluster, truth, out, outs


def finish(cluster: Cluster, truth: dict, out: Path, outs: dict, links: dict, case: str) -> dict:
    codes = cluster.wait_all(["harvester", *outs], timeout=150)
    assert codes == {"harvester": 0, **dict.fromkeys(outs, 0)}, {
        name: cluster.output(name) for name in codes
    }
    events = [parse_line(line) for line in (out / "progress.log").read_text().splitlines()]
    lost = [e["node"] for e in events if e["event"] == "node_lost"]
    # Both nodes took part (a node that joins after the work is gone proves nothing).
    result = cluster.check(truth, out, list(outs.values()), nodes=2, max_gets=3)
    records = result["records"]
    gets = collections.Counter(
        line.split()[1]
        for line in cluster.access_log.read_text().splitlines()
        if line.startswith("GET ")
    )
    twice = sum(1 for image in truth["images"] if gets[image["path"]] > 1)
    retried = sum(1 for r in records if r["attempts"] > 1)
    figures = {
        "case": case,
        "images": len(truth["images"]),
        "tasks_lost": len(truth["images"]) + len(truth["broken_images"]) - len(records),
        "fetched_twice": twice,
        "retried_after_a_failed_fetch": retried,
        "nodes_lost": len(lost),
        "packets_dropped": sum(link.counts.dropped for link in links.values()),
        "packets_cut": sum(link.counts.cut for link in links.values()),
        "packets_forwarded": sum(link.counts.forwarded for link in links.values()),
    }
    print(f"network fault figures: {figures}")
    assert figures["tasks_lost"] == 0
    assert twice <= WINDOW * len(lost) + retried, figures
    return {**result, "figures": figures, "events": events}


def test_a_lossy_link_and_a_slow_reordering_link(hosts, tmp_path: Path) -> None:
    """node-a behind 10% packet loss (both ways), node-b behind 200 ms ± 50 ms each
    way (packets overtake each other), in one crawl."""
    harvester_ns, links = hosts
    links["node-a"].set(loss=0.10)
    links["node-b"].set(delay=0.2, jitter=0.05)
    cluster, truth, out, outs = run_crawl(
        tmp_path, harvester_ns, links, {}, pages=4, images=60, seed=21, image_delay=0.6
    )
    try:
        done = finish(cluster, truth, out, outs, links, "10% loss / 200 ms ± 50 ms delay")
    finally:
        cluster.stop_all()
    assert links["node-a"].counts.dropped > 30  # the faults were real
    # (check_crawl asserted that both nodes stored images.)
    assert done["figures"]["nodes_lost"] == 0


def test_a_partition_between_the_harvester_and_one_node(hosts, tmp_path: Path) -> None:
    harvester_ns, links = hosts
    fast_expiry = {"CRAWLER_LEASE_SECONDS": "20", "CRAWLER_NODE_TIMEOUT": "5"}
    # 0.25 s per image and 2 at a time: node-a alone cannot finish within the partition,
    # so node-b comes back to a crawl that is still running.
    cluster, truth, out, outs = run_crawl(
        tmp_path, harvester_ns, links, fast_expiry, pages=8, images=400, seed=23, image_delay=0.25
    )
    try:
        deadline = time.monotonic() + 60
        while stored_by(out / "progress.log", "node-b") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_by(out / "progress.log", "node-b") >= 3, cluster.output("node-b")
        links["node-b"].set(down=True)
        cut_at = time.monotonic()
        stored_by_a_before = stored_by(out / "progress.log", "node-a")
        time.sleep(PARTITION_SECONDS)
        stored_by_a_during = stored_by(out / "progress.log", "node-a") - stored_by_a_before
        stored_by_b_at_return = stored_by(out / "progress.log", "node-b")
        links["node-b"].set(down=False)
        assert not (out / "progress.log").read_text().count("event=crawl_finished"), (
            "the crawl ended within the partition: the site is too small for this test"
        )
        done = finish(cluster, truth, out, outs, links, "30 s partition of one node")
    finally:
        cluster.stop_all()
    events = done["events"]
    assert [e["node"] for e in events if e["event"] == "node_lost"] == ["node-b"]
    lost_at = next(i for i, e in enumerate(events) if e["event"] == "node_lost")
    assert [e for e in events[lost_at:] if e["event"] == "node_joined" and e["node"] == "node-b"], (
        "node-b did not come back"
    )
    # The others kept working meanwhile, and node-b worked again after the partition.
    assert stored_by_a_during >= 100, stored_by_a_during
    assert stored_by(out / "progress.log", "node-b") > stored_by_b_at_return
    assert links["node-b"].counts.cut > 0 and time.monotonic() - cut_at > PARTITION_SECONDS
