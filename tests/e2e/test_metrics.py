"""`--metrics` on a real crawl: a harvester and a downloader node of two processes,
scraped during and after the crawl as Prometheus would, and checked against the
manifest and the progress log they left."""

from __future__ import annotations

import collections
import re
import socket
import subprocess
import sys
import time

from crawler.metrics.catalog import BY_NAME
from crawler.output.manifest import MANIFEST_NAME, read_manifest
from crawler.output.progress import parse_line
from crawler.records import error_code
from tests.e2e.cluster import free_port
from tests.support.metrics import by_label, scrape, value

LABEL_VALUE = re.compile(r"[a-z][a-z0-9_]{0,39}")
SCRAPE_FOR = 90.0  # the crawl takes a few seconds; a bound, not a wait


def test_metrics_follow_a_real_crawl_and_end_equal_to_the_manifest(cluster, tmp_path):
    truth = cluster.serve_site(pages=6, images=80, seed=5, image_delay=0.1)
    out = tmp_path / "downloads"
    harvester_at, node_at = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    # Long enough that only the final scrape below can end the processes in time.
    env = {**cluster.env, "CRAWLER_METRICS_LINGER": "60"}
    cluster.harvester(out, "--metrics", harvester_at, env=env)
    cluster.crawler(
        "node",
        [
            *("download", "--connect", cluster.listen, "--out", str(out), "--allow-private"),
            *("--processes", "2", "--concurrency", "4", "--metrics", node_at),
        ],
        {**env, "CRAWLER_NODE_ID": "node-m"},
    )

    # During: scrape both endpoints until the harvester says the crawl is finished.
    during, node_during = [], []
    deadline = time.monotonic() + SCRAPE_FOR
    while time.monotonic() < deadline:
        node_samples = scrape(node_at)
        if node_samples is not None:
            node_during.append(node_samples)
        samples = scrape(harvester_at)
        if samples is not None:
            during.append(samples)
            if value(samples, "crawler_crawl_finished") == 1:
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the crawl did not finish:\n" + cluster.output("harvester"))
    final = during[-1]  # read after the crawl's end, so the harvester may exit now
    assert cluster.wait_all(["harvester"], timeout=30) == {"harvester": 0}

    # The gauges moved: tasks were leased, and stored went up step by step.
    assert max(value(s, "crawler_tasks", state="leased") for s in during) >= 1
    stored_seen = [value(s, "crawler_tasks", state="stored") for s in during]
    assert len(set(stored_seen)) >= 3 and stored_seen == sorted(stored_seen)
    assert max(value(s, "crawler_nodes_connected") for s in during) == 2
    assert max(value(s, "crawler_frontier_pages") for s in during) >= 1
    assert max(value(s, "crawler_download_in_flight") for s in node_during) >= 1
    assert max(value(s, "crawler_download_pool_size") for s in node_during) == 8  # 2 x 4

    # After: the counters equal the manifest.
    manifest = read_manifest(out / MANIFEST_NAME)
    stored = [r for r in manifest if r["outcome"] == "stored"]
    failed = collections.Counter(
        error_code(r["error"]) for r in manifest if r["outcome"] != "stored"
    )
    assert len(stored) == len(truth["images"]) and sum(failed.values()) == len(
        truth["broken_images"]
    )
    assert value(final, "crawler_images_stored_total") == len(stored)
    assert value(final, "crawler_stored_bytes_total") == sum(r["bytes"] for r in stored)
    assert by_label(final, "crawler_images_failed_total", "reason") == {
        "http_404": len(truth["broken_images"])
    }
    assert dict(failed) == {"http_404": len(truth["broken_images"])}
    assert value(final, "crawler_images_queued_total") == len(manifest)
    assert value(final, "crawler_tasks", state="stored") == len(stored)
    assert value(final, "crawler_tasks", state="failed") == sum(failed.values())
    assert (
        value(final, "crawler_tasks", state="waiting")
        == value(final, "crawler_tasks", state="leased")
        == 0
    )
    assert value(final, "crawler_image_queued_to_stored_seconds_count") == len(stored)
    assert (
        value(final, "crawler_nodes_joined_total") == value(final, "crawler_nodes_left_total") == 2
    )
    assert value(final, "crawler_nodes_lost_total") == 0

    # ... and the progress log's pages.
    events = collections.Counter()
    page_failures = collections.Counter()
    for line in (out / "progress.log").read_text().splitlines():
        record = parse_line(line)
        events[record.get("event")] += 1
        if record.get("event") == "page_failed":
            page_failures[error_code(record.get("error"))] += 1
    assert value(final, "crawler_pages_fetched_total") == events["page_fetched"] >= 6
    assert by_label(final, "crawler_pages_failed_total", "reason") == dict(page_failures)
    assert value(final, "crawler_page_fetch_seconds_count") >= events["page_fetched"]

    # Labels stay within their bounds: codes only, one host here, the node's processes.
    for (name, labels), _ in final.items():
        for label, text in labels:
            if label == "reason":
                assert LABEL_VALUE.fullmatch(text), (name, text)
            if label == "state":
                assert text in {
                    "waiting",
                    "leased",
                    "stored",
                    "failed",
                    "busy",
                    "throttled",
                    "paused",
                    "down",
                }
    assert set(by_label(final, "crawler_host_tasks", "host")) == {cluster.site_url.split("/")[2]}
    assert {dict(labels)["node"] for (name, labels) in final if name == "crawler_node_tasks"} <= {
        "node-m-0",
        "node-m-1",
    }
    ours = {name + suffix for name in BY_NAME for suffix in ("", "_bucket", "_sum", "_count")}
    assert {name for name, _ in final if not name.startswith("process_")} <= ours
    # The standard process metrics too, the harvester's own.
    assert value(final, "process_resident_memory_bytes") > 10e6
    assert value(final, "process_cpu_seconds_total") > 0

    # The node: once both processes have ended, its endpoint has their sum, and a
    # scrape of it lets the node exit.
    deadline = time.monotonic() + SCRAPE_FOR
    node_final = None
    while time.monotonic() < deadline:
        node_final = scrape(node_at)
        if node_final is not None and value(node_final, "crawler_download_processes") == 0:
            break
        time.sleep(0.1)
    assert node_final is not None and value(node_final, "crawler_download_processes") == 0
    assert cluster.wait_all(["node"], timeout=30) == {"node": 0}
    assert value(node_final, "crawler_download_images_stored_total") == len(stored)
    assert value(node_final, "crawler_download_bytes_total") == sum(r["bytes"] for r in stored)
    assert value(node_final, "crawler_download_image_bytes_count") == len(stored)
    assert by_label(node_final, "crawler_download_images_failed_total", "reason") == {
        "http_404": len(truth["broken_images"])
    }
    assert value(node_final, "crawler_download_in_flight") == 0
    assert scrape(node_at) is None and scrape(harvester_at) is None  # both gone
    assert not list(tmp_path.glob("crawler-metrics-*"))


def test_a_metrics_port_in_use_is_one_line_and_leaves_no_crawl(cluster, tmp_path):
    cluster.serve_site(pages=1, images=2, seed=1)
    out = tmp_path / "downloads"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "crawler",
                "harvest",
                cluster.site_url,
                *("--listen", cluster.listen, "--out", str(out), "--metrics", busy),
            ],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        node = subprocess.run(
            [sys.executable, "-m", "crawler", "download", "--processes", "2", "--metrics", busy],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    for run in (done, node):
        assert run.returncode == 2, run.stderr
        assert f"cannot listen on {busy}" in run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (out / ".state" / "crawl.db").exists()
