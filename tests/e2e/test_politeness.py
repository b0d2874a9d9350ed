"""Per-host limits hold across a whole cluster: three downloader processes, five hosts."""

from __future__ import annotations

import json

import pytest

from crawler.output.progress import parse_line
from tests.support.hosts_server import HostBehaviour, Hosts

IMAGES_PER_HOST = 24
LIMIT = 4
CRAWL_DELAY = 0.3
# Arrival times are taken by the server; a request may travel a little faster than
# the one before it, so gaps are checked with a small allowance.
TIMING_SLACK = 0.05
IN_FLIGHT_GRACE = 0.1


@pytest.fixture
def hosts():
    running = Hosts(
        [
            HostBehaviour(delay=0.05),  # 0: fast
            HostBehaviour(delay=0.05),  # 1: fast, with an override concurrency=2
            HostBehaviour(delay=1.0),  # 2: slow
            HostBehaviour(delay=0.05, throttle_first=1, retry_after=2),  # 3: says 429 once
            HostBehaviour(delay=0.05, crawl_delay=CRAWL_DELAY),  # 4: robots.txt Crawl-delay
        ],
        IMAGES_PER_HOST,
    )
    yield running
    running.close()


def test_per_host_limits_hold_across_three_downloader_processes(cluster, hosts, tmp_path):
    out = tmp_path / "downloads"
    cluster.site_url = hosts.page.origin + "/"
    override = f"127.0.0.1:{hosts.images[1].port} concurrency=2"
    env = {**cluster.env, "CRAWLER_HOST_CONCURRENCY": str(LIMIT), "CRAWLER_HOST_LIMITS": override}
    cluster.harvester(out, env=env)
    names = ["node-a", "node-b", "node-c"]
    for name in names:
        cluster.downloader(name, out, concurrency=16)
    codes = cluster.wait_all(["harvester", *names])
    assert codes == dict.fromkeys(["harvester", *names], 0), cluster.output("harvester")

    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 5 * IMAGES_PER_HOST
    assert all(record["outcome"] == "stored" for record in records)

    fast, limited, slow, throttled, delayed = (hosts.record(i) for i in range(5))
    # Concurrency: never above the limit on any host, whatever node sent the request.
    assert slow.max_open == LIMIT, "the slow host should have been kept at its limit"
    for record in (fast, throttled, delayed):
        assert record.max_open <= LIMIT
    assert limited.max_open <= 2

    # robots.txt Crawl-delay spaces the requests' starts, across all nodes.
    gaps = [b - a for a, b in zip(delayed.starts, delayed.starts[1:], strict=False)]
    assert min(gaps) >= CRAWL_DELAY - TIMING_SLACK, sorted(gaps)[:5]
    assert delayed.max_open == 1

    # 429 with Retry-After: 2 stops that host for 2 s, for every node. Requests already
    # on their way when the 429 went out may still arrive just after it.
    assert throttled.statuses.count(429) == 1
    (sent,) = throttled.throttle_ends
    in_pause = [t - sent for t in throttled.starts if sent + IN_FLIGHT_GRACE < t < sent + 2]
    assert not in_pause, f"requests {in_pause} s after a 429 that said Retry-After: 2"
    assert len([t for t in throttled.starts if sent < t <= sent + IN_FLIGHT_GRACE]) < LIMIT
    # ... while the other hosts keep going.
    others = [t for r in (fast, slow) for t in r.starts if sent < t < sent + 1.9]
    assert others, "other hosts were held up by the throttled one"

    # No head-of-line blocking: the fast host was done long before the slow one.
    assert max(fast.ends) < max(slow.starts)

    log = [parse_line(line) for line in (out / "progress.log").read_text().splitlines()]
    delays = [e for e in log if e.get("event") == "crawl_delay"]
    assert [e["host"] for e in delays] == [f"127.0.0.1:{hosts.images[4].port}"]
    throttling = [e.get("throttled", "") for e in log if e.get("event") == "hosts"]
    assert any(f"127.0.0.1:{hosts.images[3].port}=paused" in t for t in throttling)
