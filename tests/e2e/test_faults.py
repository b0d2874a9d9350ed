"""Faults on both sides of a real crawl: a web server that fails on purpose, a node that freezes.

The web faults (``tests/flaky_server.py``) fail each image path a known number of
times; the crawl must retry exactly that often, wait as long as ``Retry-After`` asks,
and store every image once. The frozen node (SIGSTOP) holds leases it will never
finish; the harvester must take them back and another node must finish the work.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from crawler.config import Config
from crawler.download.fetch import FetchLimits, fetch_image
from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from crawler.storage import TMP_DIR, remove_stale_temporaries
from crawler.web.safehttp import AddressPolicy, make_session
from tests.support.flaky_server import FlakyServer, png_for

RETRY_AFTER = 2  # what the server asks for on 429 (delay-seconds) and 503 (HTTP-date)
# Read timeout 1 s: a stall fails in 1 s, while a trickle (pieces every 0.125 s for 1.5 s)
# must still succeed, under the 3 s total deadline.
FAST_TIMEOUTS = {
    "CRAWLER_CONNECT_TIMEOUT": "1",
    "CRAWLER_READ_TIMEOUT": "1",
    "CRAWLER_TOTAL_TIMEOUT": "3",
}
LIMITS = replace(
    FetchLimits.from_config(Config()), connect_timeout=1, read_timeout=1, total_timeout=3
)
# What each failing request looks like to the downloader (error prefix, retry_after).
FAULT_RESULTS = {
    "flaky500": ("http_500", None),
    "flaky503": ("http_503", float(RETRY_AFTER)),
    "throttle429": ("http_429", float(RETRY_AFTER)),
    "reset": ("connection_error: ", None),
    "cut": ("connection_error: ", None),
    "stall": ("timeout: ", None),
}
RUN_BOUND = 30.0


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyServer]:
    server = FlakyServer(access_log=tmp_path / "flaky-access.log", retry_after=RETRY_AFTER)
    yield server
    server.close()


def test_each_fault_fails_its_first_requests_then_serves_the_image(tmp_path: Path) -> None:
    """The server itself, fetched directly: each fault looks to the downloader as intended."""
    server = FlakyServer(paths_per_kind=1, retry_after=RETRY_AFTER)
    session = make_session(4, "faults-test", AddressPolicy(allow_private=True))
    try:
        for route in server.routes:
            results = [
                fetch_image(session, 1, server.url + route.path, tmp_path, "n", LIMITS).to_wire()
                for _ in range(route.failures + 1)
            ]
            *failures, last = results
            for result in failures:
                error, retry_after = FAULT_RESULTS[route.kind]
                assert result["error"].startswith(error), (route, result)
                assert (result["retryable"], result["retry_after"]) == (True, retry_after), route
            if route.kind == "gone404":
                assert (last["error"], last["retryable"]) == ("http_404", False)
                continue
            assert last["outcome"] == "stored", (route, last)
            assert last["sha256"] == hashlib.sha256(png_for(route.path)).hexdigest()
            if route.kind in ("stall", "trickle"):
                # Longer than the read timeout: one fails on it, the other must not.
                assert results[0]["elapsed"] >= LIMITS.read_timeout
        assert not list((tmp_path / TMP_DIR).iterdir())
    finally:
        session.close()
        server.close()


def test_a_crawl_retries_every_fault_until_each_image_is_stored(cluster, flaky, tmp_path):
    """Real processes against the flaky server: each fault costs exactly its retries."""
    cluster.site_url = flaky.url + "/"
    cluster.env.update(FAST_TIMEOUTS)
    out = tmp_path / "downloads"
    started = time.monotonic()
    cluster.harvester(out, env={**cluster.env, "CRAWLER_MAX_ATTEMPTS": "4"})
    for name in ("node-a", "node-b"):
        cluster.downloader(name, out, concurrency=4)

    codes = cluster.wait_all(["harvester", "node-a", "node-b"], timeout=RUN_BOUND)
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0}, cluster.output("harvester")
    assert time.monotonic() - started < RUN_BOUND

    records = {r["url"]: r for r in read_manifest(out / "manifest.jsonl")}
    assert set(records) == {flaky.url + route.path for route in flaky.routes}
    gets = collections.Counter(hit.path for hit in flaky.hits if hit.method == "GET")
    for route in flaky.routes:
        record = records[flaky.url + route.path]
        if route.kind == "gone404":
            outcome = (record["outcome"], record["status"], record["error"], record["attempts"])
            assert outcome == ("failed", 404, "http_404", 1)
            assert gets[route.path] == 1, "a 404 is final: never asked again"
            continue
        assert (record["outcome"], record["leases"]) == ("stored", route.failures + 1), record
        # A try that got no answer at all, after another, is spared (the host looks
        # down): it does not count against max_attempts. Every other try counts.
        counted = record["attempts"]
        spared = route.kind in ("reset", "stall") and 1 <= counted < route.failures + 1
        assert counted == route.failures + 1 or spared, record
        assert record["sha256"] == hashlib.sha256(png_for(route.path)).hexdigest()
        assert (out / record["path"]).read_bytes() == png_for(route.path)
        assert gets[route.path] == route.failures + 1, f"{route.path} fetched {gets[route.path]}x"
    trickles = [r for url, r in records.items() if "/trickle/" in url]
    assert all(r["elapsed"] >= LIMITS.read_timeout for r in trickles), "slow, yet no timeout"

    stored = [r for r in flaky.routes if r.kind != "gone404"]
    images = [p for p in out.rglob("*.png") if not p.relative_to(out).parts[0].startswith(".")]
    assert len(images) == len(stored), "an image was stored twice or not at all"
    assert not list((out / TMP_DIR).glob("*")), "temporary file left behind"
    events = collections.Counter(
        parse_line(line)["event"] for line in (out / "progress.log").read_text().splitlines()
    )
    assert (events["stored"], events["failed"]) == (len(stored), len(flaky.routes) - len(stored))
    assert events["crawl_finished"] == 1 and events["node_lost"] == 0

    # Retry-After: the next request for the same path waits at least what the server asked.
    for route in flaky.routes:
        if route.kind in ("throttle429", "flaky503"):
            times = flaky.get_times(route.path)
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert min(gaps) >= RETRY_AFTER - 0.05, f"{route.path}: retried after {gaps} s"


def stored_by(log: Path, node: str) -> int:
    if not log.exists():
        return 0
    # The log is being written: its last line may be incomplete, so no field is certain.
    events = map(parse_line, log.read_text().splitlines())
    return sum(e.get("event") == "stored" and e.get("node") == node for e in events)


def test_a_frozen_downloader_loses_its_leases_and_the_crawl_still_completes(cluster, tmp_path):
    """SIGSTOP a node holding leases: it goes silent without hanging up. The harvester
    declares it lost, its tasks go to the other node, every image is stored once."""
    truth = cluster.serve_site(image_delay=0.05, pages=8, images=60, seed=11)
    out = tmp_path / "downloads"
    fast_expiry = {**cluster.env, "CRAWLER_LEASE_SECONDS": "8", "CRAWLER_NODE_TIMEOUT": "3"}
    cluster.harvester(out, env=fast_expiry)
    frozen = cluster.downloader("frozen", out, concurrency=2)
    try:
        deadline = time.monotonic() + 20
        while not stored_by(out / "progress.log", "frozen") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_by(out / "progress.log", "frozen"), cluster.output("frozen")
        # More leases than it has in flight (2): some are surely held when it stops.
        cluster.wait_for_leases("frozen", more_than=2)
        os.kill(frozen.pid, signal.SIGSTOP)
        cluster.downloader("rescuer", out, concurrency=8)

        codes = cluster.wait_all(["harvester", "rescuer"], timeout=RUN_BOUND)
        assert codes == {"harvester": 0, "rescuer": 0}, cluster.output("harvester")
    finally:
        os.kill(frozen.pid, signal.SIGKILL)  # works on a stopped process too
        frozen.wait(timeout=10)

    # A download the frozen node had half-written stays in OUT/.tmp until the next node
    # starts on this host and sees that its writer is dead; do what that start does.
    left = sorted(p.name for p in (out / TMP_DIR).glob("*"))
    assert all(f"-{frozen.pid}-" in name for name in left), left
    assert remove_stale_temporaries(out) == len(left)
    records = cluster.check(truth, out, nodes=2, max_gets=2)["records"]
    assert [r for r in records if r["leases"] == 2], "the frozen node's tasks came back"
    # A lease lost with its node is not a counted attempt.
    assert all(r["attempts"] == 1 for r in records if r["outcome"] == "stored")
    events = [parse_line(line) for line in (out / "progress.log").read_text().splitlines()]
    lost = [e["node"] for e in events if e["event"] == "node_lost"]
    assert lost == ["frozen"]
