"""Durable crawl state: the harvester killed or stopped mid-crawl resumes with nothing lost."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import wait_for_text


def harvest_once(cluster, out: Path, page: str) -> subprocess.CompletedProcess:
    """Run ``crawler harvest`` on the cluster's state to completion, as a user would."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "crawler",
            "harvest",
            cluster.site_url + page,
            "--listen",
            cluster.listen,
            "--out",
            str(out),
            "--allow-private",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def count_events(log: Path, event: str) -> int:
    return log.read_text().count(f"event={event} ")


def wait_for_events(log: Path, event: str, count: int, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and count_events(log, event) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} {event} events in {log} after {timeout} s")


def test_harvester_killed_mid_crawl_resumes_with_nothing_lost(cluster, tmp_path, capsys):
    truth = cluster.serve_site(image_delay=0.05, pages=10, images=120, seed=21)
    out = tmp_path / "downloads"
    log = out / "progress.log"
    first = cluster.harvester(out)
    for name in ("node-a", "node-b"):
        cluster.downloader(name, out, concurrency=4)
    wait_for_events(log, "stored", 25)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    stored_before_kill = count_events(log, "stored")

    # The same command again: same state folder, same port the downloaders retry.
    cluster.started.pop("harvester")
    cluster.harvester(out)
    codes = cluster.wait_all(["harvester", "node-a", "node-b"])
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0}, cluster.output("harvester")

    records = cluster.check(
        truth,
        out,
        nodes=2,
        max_gets=2,
        harvester_killed=True,
    )["records"]
    assert "event=crawl_resumed" in log.read_text()
    for node in ("node-a", "node-b"):
        assert "reconnecting" in (cluster.logs / f"{node}.err").read_text()
    gets = collections.Counter(
        line.split()[1]
        for line in cluster.access_log.read_text().splitlines()
        if line.startswith("GET /img/")
    )
    twice = sorted(path for path, n in gets.items() if n > 1)
    pages = collections.Counter(
        line.split()[1]
        for line in cluster.access_log.read_text().splitlines()
        if line.startswith("GET /pages/") or line.startswith("GET /index")
    )
    with capsys.disabled():
        print(
            f"\n[resume after kill -9] {stored_before_kill} images stored before the kill, "
            f"{len(records)} URLs in the manifest, {len(twice)} images fetched twice "
            f"(at most 2 nodes x 8 in flight), pages fetched twice: "
            f"{sum(1 for n in pages.values() if n > 1)}"
        )
    # Only what was in flight at the kill may be fetched again: two nodes of 4 greenlets
    # plus one leased batch each.
    assert len(twice) <= 2 * (4 + 4)
    # No page that was done before the kill is fetched again: at most the pages in flight.
    assert sum(1 for n in pages.values() if n > 1) <= 8


def test_stop_with_a_signal_then_resume_then_already_finished(cluster, tmp_path):
    # 0.1 s per image: the first node to connect must not finish before the second joins.
    truth = cluster.serve_site(image_delay=0.1, pages=8, images=60, seed=22)
    out = tmp_path / "downloads"
    log = out / "progress.log"
    first = cluster.harvester(out)
    wait_for_text(log, "event=queued")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 143, cluster.output("harvester")  # 128 + SIGTERM
    assert "event=crawl_stopped signal=15" in log.read_text()
    assert "run the same command again to resume" in (cluster.logs / "harvester.err").read_text()

    # A crash while a manifest line was half written: the resume must repair it.
    with (out / "manifest.jsonl").open("a") as manifest:
        manifest.write('{"url": "http://torn.example/a.png", "outc')

    cluster.started.pop("harvester")
    cluster.harvester(out)
    for name in ("node-a", "node-b"):
        cluster.downloader(name, out)
    codes = cluster.wait_all(["harvester", "node-a", "node-b"])
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0}, cluster.output("harvester")
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines), "every manifest line must be whole JSON"
    assert "repaired_manifest=True" in log.read_text()
    cluster.check(truth, out, nodes=2)

    again = harvest_once(cluster, out, "index.html")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("crawl already finished")
    assert f"{len(truth['images'])} stored" in again.stdout
    assert (out / "manifest.jsonl").read_text().splitlines() == lines


def test_resuming_with_other_seeds_is_refused(cluster, tmp_path):
    cluster.serve_site(pages=3, images=10, seed=23)
    out = tmp_path / "downloads"
    first = cluster.harvester(out)
    wait_for_text(out / "progress.log", "event=queued")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 143
    other = harvest_once(cluster, out, "pages/p001.html")
    assert other.returncode == 4  # a state folder of another crawl
    assert "holds a crawl of other seeds" in other.stderr
