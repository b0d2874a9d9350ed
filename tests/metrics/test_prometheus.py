"""The Prometheus metrics of each side, served on 127.0.0.1 and scraped as Prometheus
does; a multi-process node's figures summed across real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crawler.broker.board import BoardCounters, Task
from crawler.broker.broker import QueueFigures
from crawler.config import MetricsConfig
from crawler.errors import ConfigError
from crawler.metrics import harvest_metrics, node_metrics, process_group_metrics
from crawler.metrics.base import (
    LIBRARY_DIR_ENV,
    METRICS_DIR_ENV,
    PAGE_FAILED,
    PAGE_FETCHED,
    PAGE_RETRIED,
    PAGE_SKIPPED,
    CrawlFigures,
    NoMetrics,
)
from crawler.records import FAILED, STORED, Result
from tests.e2e.cluster import free_port
from tests.support.metrics import by_label, scrape, value


def settings(**extra) -> MetricsConfig:
    return MetricsConfig(metrics=f"127.0.0.1:{free_port()}", **extra)


def queue_figures(**extra) -> QueueFigures:
    fields = {
        "tasks": {"waiting": 3, "leased": 2, "stored": 5, "failed": 1},
        "nodes": 2,
        "nodes_paused": 1,
        "hosts": {"busy": 1, "throttled": 0, "paused": 1, "down": 0},
        "host_tasks": {f"h{i}.test": {"waiting": i, "stored": 1} for i in range(6)},
        "node_tasks": {"n1": {"leased": 2, "stored": 5, "failed": 1}},
        "counters": BoardCounters(4, {"lease_expired": 2, "node_lost": 3}),
        "closed": False,
    }
    return QueueFigures(**{**fields, **extra})


def final_task(state: str, error: str | None = None, size: int = 0, queued_at: float = 0.0):
    task = Task(1, "http://a.test/1.png", "http://a.test/", "img", state=state)
    outcome = STORED if state == STORED else FAILED
    task.result = Result(1, task.url, outcome=outcome, bytes=size, error=error)
    task.queued_at = queued_at
    return task


@pytest.fixture
def harvester():
    config = settings(metrics_top_hosts=2)
    figures = CrawlFigures(queue_figures(), frontier=7, finished=False)
    metrics = harvest_metrics(config, lambda: figures)
    yield metrics
    metrics.close()


def test_off_is_nothing_at_all():
    assert isinstance(harvest_metrics(MetricsConfig(), lambda: None), NoMetrics)
    assert isinstance(node_metrics(MetricsConfig()), NoMetrics)
    assert process_group_metrics(MetricsConfig()) is None


def test_the_harvester_counts_pages_images_and_nodes_by_reason(harvester):
    harvester.page(PAGE_FETCHED, None, 0.02)
    harvester.page(PAGE_FETCHED, None, 0.5)
    harvester.page(PAGE_FAILED, "http_404", 0.01)
    harvester.page(PAGE_FAILED, "timeout: read timed out after 15 s", 15.0)
    harvester.page(PAGE_SKIPPED, "robots_disallowed", None)
    harvester.page(PAGE_RETRIED, "connection_error: refused", 0.001)
    harvester.images_queued(10)
    harvester.images_queued(0)
    harvester.image_final(final_task(STORED, size=100, queued_at=time.time() - 2))
    harvester.image_final(final_task(STORED, size=50))  # queued before times were kept
    harvester.image_final(final_task(FAILED, "http_404"))
    harvester.image_final(final_task(FAILED, "http_999"))
    for event in ("node_joined", "node_joined", "node_lost", "node_left", "node_failing"):
        harvester.node_event(event)

    samples = scrape(harvester.where)
    assert value(samples, "crawler_pages_fetched_total") == 2
    assert by_label(samples, "crawler_pages_failed_total", "reason") == {
        "http_404": 1,
        "timeout": 1,
    }
    assert by_label(samples, "crawler_pages_skipped_total", "reason") == {"robots_disallowed": 1}
    assert by_label(samples, "crawler_page_retries_total", "reason") == {"connection_error": 1}
    assert value(samples, "crawler_page_fetch_seconds_count") == 5
    assert value(samples, "crawler_page_fetch_seconds_bucket", le="0.025") == 3  # cumulative
    assert value(samples, "crawler_images_queued_total") == 10
    assert value(samples, "crawler_images_stored_total") == 2
    assert value(samples, "crawler_stored_bytes_total") == 150
    assert by_label(samples, "crawler_images_failed_total", "reason") == {
        "http_404": 1,
        "other": 1,
    }
    assert value(samples, "crawler_image_queued_to_stored_seconds_count") == 1
    assert 2 <= value(samples, "crawler_image_queued_to_stored_seconds_sum") < 10
    assert value(samples, "crawler_nodes_joined_total") == 2
    assert (
        value(samples, "crawler_nodes_lost_total")
        == value(samples, "crawler_nodes_left_total")
        == 1
    )


def test_the_harvester_counts_renders_by_outcome_and_pages_left_unrendered(harvester):
    harvester.render(None, 0.8, 5)
    harvester.render("render_timeout", 20.0, 1)
    harvester.render("render_failed: cannot start Chromium: no such file", 0.1, 0)
    harvester.script_page_unrendered()
    harvester.script_page_unrendered()

    samples = scrape(harvester.where)
    assert by_label(samples, "crawler_pages_rendered_total", "outcome") == {
        "ok": 1,
        "timeout": 1,
        "failed": 1,
    }
    assert value(samples, "crawler_rendered_images_total") == 6
    assert value(samples, "crawler_script_pages_unrendered_total") == 2
    assert value(samples, "crawler_render_seconds_count") == 3
    assert value(samples, "crawler_render_seconds_bucket", le="1.0") == 2


def test_the_harvester_gauges_are_the_figures_at_the_scrape_bounded(harvester):
    samples = scrape(harvester.where)
    assert by_label(samples, "crawler_tasks", "state") == {
        "waiting": 3,
        "leased": 2,
        "stored": 5,
        "failed": 1,
    }
    assert value(samples, "crawler_frontier_pages") == 7
    assert value(samples, "crawler_nodes_connected") == 2
    assert value(samples, "crawler_node_paused") == 1
    assert value(samples, "crawler_hosts", state="paused") == 1
    assert value(samples, "crawler_image_retries_total") == 4
    assert by_label(samples, "crawler_leases_expired_total", "reason") == {
        "lease_expired": 2,
        "node_lost": 3,
    }
    # Two hosts of six keep their own series (the most tasks); the rest are summed.
    hosts = {dict(labels)["host"] for name, labels in samples if name == "crawler_host_tasks"}
    assert hosts == {"h5.test", "h4.test", "other"}
    assert value(samples, "crawler_host_tasks", host="other", state="waiting") == 0 + 1 + 2 + 3
    assert value(samples, "crawler_host_tasks", host="other", state="stored") == 4
    assert value(samples, "crawler_node_tasks", node="n1", state="leased") == 2
    assert value(samples, "crawler_crawl_finished") == 0


def test_a_scrape_while_the_figures_cannot_be_read_still_serves_the_counters(capsys):
    def broken() -> CrawlFigures:
        raise RuntimeError("a bug")

    metrics = harvest_metrics(settings(), broken)
    try:
        metrics.images_queued(3)
        samples = scrape(metrics.where)
        assert value(samples, "crawler_images_queued_total") == 3
        assert not any(name == "crawler_tasks" for name, _ in samples)
        assert scrape(metrics.where) is not None
    finally:
        metrics.close()
    said = capsys.readouterr().err
    assert said.count("cannot read the crawl's figures (RuntimeError: a bug)") == 1


def test_linger_ends_at_the_first_scrape_after_it_or_at_the_bound(harvester):
    started = time.monotonic()
    harvester.linger(0.3)  # nobody scrapes
    assert 0.25 <= time.monotonic() - started < 2
    threading.Timer(0.2, scrape, [harvester.where]).start()
    started = time.monotonic()
    harvester.linger(30)
    assert time.monotonic() - started < 10
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()  # a signal asks the process to stop
    started = time.monotonic()
    harvester.linger(30, stop.is_set)
    assert time.monotonic() - started < 10


def test_a_port_in_use_is_a_config_error_and_close_frees_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ConfigError, match=f"metrics: cannot listen on {busy}: "):
            harvest_metrics(MetricsConfig(metrics=busy), lambda: None)
    config = settings()
    harvest_metrics(config, lambda: None).close()
    harvest_metrics(config, lambda: None).close()  # the same port again
    assert scrape(config.metrics) is None


def test_a_node_process_counts_what_it_reports():
    metrics = node_metrics(settings())
    try:
        metrics.pool(16)
        metrics.in_flight(5)
        metrics.in_flight(3)
        handed_back = Result(3, "u", error="store_error: no space left", local="storage")
        metrics.reported(
            [
                Result(1, "u", outcome=STORED, bytes=2000, elapsed=0.03),
                Result(2, "u", error="http_503", retryable=True, elapsed=0.01),
                handed_back,
            ]
        )
        metrics.reported([Result(4, "u", outcome=STORED, bytes=1000, elapsed=0.02)])
        samples = scrape(metrics.where)
    finally:
        metrics.close()
    assert value(samples, "crawler_download_pool_size") == 16
    assert value(samples, "crawler_download_in_flight") == 3
    assert value(samples, "crawler_download_processes") == 1
    assert value(samples, "crawler_download_images_stored_total") == 2
    assert value(samples, "crawler_download_bytes_total") == 3000
    assert value(samples, "crawler_download_image_bytes_bucket", le="1000.0") == 1
    assert value(samples, "crawler_download_image_bytes_bucket", le="4000.0") == 2
    assert by_label(samples, "crawler_download_images_failed_total", "reason") == {"http_503": 1}
    assert by_label(samples, "crawler_download_images_handed_back_total", "reason") == {
        "store_error": 1
    }
    assert value(samples, "crawler_download_fetch_seconds_count") == 3


CHILD = """
import sys, time
from crawler.config import MetricsConfig
from crawler.metrics import node_metrics
from crawler.records import STORED, Result
metrics = node_metrics(MetricsConfig(metrics="127.0.0.1:1"))  # a child never listens
metrics.pool(4)
metrics.in_flight(2)
for i in range(int(sys.argv[1])):
    metrics.reported([Result(i, "u", outcome=STORED, bytes=10, elapsed=0.01)])
print("ready", flush=True)
sys.stdin.readline()  # until the test lets it end
"""


def test_a_multi_process_node_serves_the_sum_of_its_live_processes():
    group = process_group_metrics(settings())
    folder = Path(group.folder)
    env = {**os.environ, **group.child_environment()}
    assert env[METRICS_DIR_ENV] == env[LIBRARY_DIR_ENV] == group.folder
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(count)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in (3, 5)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        samples = scrape(group.where)
        assert value(samples, "crawler_download_processes") == 2
        assert value(samples, "crawler_download_pool_size") == 8
        assert value(samples, "crawler_download_in_flight") == 4
        assert value(samples, "crawler_download_images_stored_total") == 8
        assert value(samples, "crawler_download_bytes_total") == 80

        first = children[0]
        first.communicate("", timeout=30)
        group.process_ended(first.pid)
        samples = scrape(group.where)
        # Its gauges left the sums; what it counted stays counted.
        assert value(samples, "crawler_download_processes") == 1
        assert value(samples, "crawler_download_in_flight") == 2
        assert value(samples, "crawler_download_images_stored_total") == 8
    finally:
        for child in children:
            if child.poll() is None:
                child.communicate("", timeout=30)
        group.close()
    assert not folder.exists()
    assert scrape(group.where) is None
