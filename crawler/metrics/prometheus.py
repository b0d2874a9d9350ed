"""The metrics in Prometheus' terms, on the official ``prometheus_client``.

Each command keeps its metrics in a registry of its own (never the library's global
one). The harvester's gauges, and the two counters the task board keeps itself, are
read from the crawl's figures at each scrape (``_CrawlCollector``): they cost nothing
between scrapes and are never stale. A downloader node of several processes uses
the library's multi-process mode: each process writes its values to files in a
folder the node's parent made (``PROMETHEUS_MULTIPROC_DIR``), and the parent serves
their sum (``ProcessGroupMetrics``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from crawler.broker.board import Task
from crawler.config import MetricsConfig, metrics_address
from crawler.metrics.base import (
    LIBRARY_DIR_ENV,
    METRICS_DIR_ENV,
    PAGE_FAILED,
    PAGE_FETCHED,
    PAGE_RETRIED,
    PAGE_SKIPPED,
    FiguresSource,
    never,
)
from crawler.metrics.catalog import (
    BY_NAME,
    COUNTER,
    DOWNLOADER,
    GAUGE,
    HARVESTER,
    HISTOGRAM,
    METRICS,
    MetricSpec,
    reason_label,
    top_labels,
)
from crawler.metrics.endpoint import MetricsEndpoint
from crawler.records import STORED, Result

# No ``*_created`` series beside each counter and histogram: every process of the
# crawler starts its metrics at its own start, which Prometheus sees as a reset anyway.
disable_created_metrics()

# Harvester metrics read from the crawl's figures at each scrape, not counted here.
_FROM_FIGURES = frozenset(
    {"crawler_image_retries_total", "crawler_leases_expired_total"}
    | {spec.name for spec in METRICS if spec.side == HARVESTER and spec.kind == GAUGE}
)


def _metric(spec: MetricSpec, registry: CollectorRegistry) -> Any:
    if spec.kind == COUNTER:
        return Counter(spec.name, spec.help, spec.labels, registry=registry)
    if spec.kind == HISTOGRAM:
        return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)
    # livesum: a node's processes add up, and a process that ended drops out.
    return Gauge(spec.name, spec.help, spec.labels, registry=registry, multiprocess_mode="livesum")


def _metrics(side: str, registry: CollectorRegistry, leave_out=frozenset()) -> dict[str, Any]:
    return {
        spec.name: _metric(spec, registry)
        for spec in METRICS
        if spec.side == side and spec.name not in leave_out
    }


def _endpoint(settings: MetricsConfig, registry: CollectorRegistry) -> MetricsEndpoint:
    host, port = metrics_address(settings.metrics)
    return MetricsEndpoint(host, port, registry)


class _CrawlCollector:
    """The harvester's gauges (and the board's counters) from the crawl's figures."""

    def __init__(self, figures: FiguresSource, settings: MetricsConfig) -> None:
        self.figures = figures
        self.settings = settings
        self._said = False

    def collect(self) -> Iterator[Metric]:
        try:
            crawl = self.figures()
        except Exception as exc:  # a bug of ours: the counters are still served
            if not self._said:
                self._said = True
                print(
                    f"harvester: metrics: cannot read the crawl's figures "
                    f"({type(exc).__name__}: {exc}); scrapes go on without its gauges",
                    file=sys.stderr,
                    flush=True,
                )
            return
        queue = crawl.queue

        def family(name: str, labelled: dict[tuple[str, ...], float] | float) -> Metric:
            spec = BY_NAME[name]
            kind = CounterMetricFamily if spec.kind == COUNTER else GaugeMetricFamily
            if not spec.labels:
                return kind(name, spec.help, value=labelled)
            metric = kind(name, spec.help, labels=spec.labels)
            for labels, value in sorted(labelled.items()):
                metric.add_metric(list(labels), value)
            return metric

        def per_state(rows: dict[str, dict[str, float]]) -> dict[tuple[str, ...], float]:
            return {
                (key, state): value
                for key, states in rows.items()
                for state, value in states.items()
            }

        yield family("crawler_image_retries_total", queue.counters.retries)
        yield family(
            "crawler_leases_expired_total",
            {(reason,): count for reason, count in queue.counters.taken_back.items()},
        )
        yield family("crawler_tasks", {(state,): count for state, count in queue.tasks.items()})
        yield family("crawler_frontier_pages", crawl.frontier)
        yield family("crawler_nodes_connected", queue.nodes)
        yield family("crawler_hosts", {(state,): count for state, count in queue.hosts.items()})
        hosts = top_labels(queue.host_tasks.items(), self.settings.metrics_top_hosts)
        yield family("crawler_host_tasks", per_state(hosts))
        nodes = top_labels(queue.node_tasks.items(), self.settings.metrics_top_nodes)
        yield family("crawler_node_tasks", per_state(nodes))
        yield family("crawler_node_paused", queue.nodes_paused)
        yield family("crawler_crawl_finished", 1 if crawl.finished else 0)


class PrometheusHarvestMetrics:
    """``HarvestMetrics`` served on ``settings.metrics`` (bound when made)."""

    def __init__(self, settings: MetricsConfig, figures: FiguresSource) -> None:
        registry = CollectorRegistry()
        self._m = _metrics(HARVESTER, registry, _FROM_FIGURES)
        registry.register(_CrawlCollector(figures, settings))
        ProcessCollector(registry=registry)  # process_*: CPU, memory, open files
        self._endpoint = _endpoint(settings, registry)
        self.where = self._endpoint.where

    def page(self, outcome: str, error: str | None, seconds: float | None) -> None:
        m = self._m
        if outcome == PAGE_FETCHED:
            m["crawler_pages_fetched_total"].inc()
        elif outcome == PAGE_FAILED:
            m["crawler_pages_failed_total"].labels(reason_label(error)).inc()
        elif outcome == PAGE_SKIPPED:
            m["crawler_pages_skipped_total"].labels(reason_label(error)).inc()
        elif outcome == PAGE_RETRIED:
            m["crawler_page_retries_total"].labels(reason_label(error)).inc()
        if seconds is not None:
            m["crawler_page_fetch_seconds"].observe(seconds)

    def render(self, error: str | None, seconds: float, images: int) -> None:
        m = self._m
        outcome = "ok" if error is None else "timeout" if error == "render_timeout" else "failed"
        m["crawler_pages_rendered_total"].labels(outcome).inc()
        m["crawler_render_seconds"].observe(seconds)
        if images:
            m["crawler_rendered_images_total"].inc(images)

    def script_page_unrendered(self) -> None:
        self._m["crawler_script_pages_unrendered_total"].inc()

    def images_queued(self, count: int) -> None:
        if count:
            self._m["crawler_images_queued_total"].inc(count)

    def image_final(self, task: Task) -> None:
        m = self._m
        result = task.result
        if task.state == STORED:
            m["crawler_images_stored_total"].inc()
            m["crawler_stored_bytes_total"].inc((result and result.bytes) or 0)
            if task.queued_at > 0:
                wait = max(time.time() - task.queued_at, 0.0)
                m["crawler_image_queued_to_stored_seconds"].observe(wait)
        else:
            m["crawler_images_failed_total"].labels(reason_label(result and result.error)).inc()

    def node_event(self, name: str) -> None:
        metric = {
            "node_joined": "crawler_nodes_joined_total",
            "node_lost": "crawler_nodes_lost_total",
            "node_left": "crawler_nodes_left_total",
        }.get(name)
        if metric is not None:
            self._m[metric].inc()

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        self._endpoint.wait_for_scrape(seconds, cancelled)

    def close(self) -> None:
        self._endpoint.stop()


class PrometheusNodeMetrics:
    """``NodeMetrics`` of one downloader process: served on ``settings.metrics``, or,
    in a process of a multi-process node, written for its parent to serve."""

    def __init__(self, settings: MetricsConfig, serve: bool = True) -> None:
        registry = CollectorRegistry()
        self._m = _metrics(DOWNLOADER, registry)
        if serve:  # (a process of a multi-process node: its parent serves no process_*)
            ProcessCollector(registry=registry)
        self._endpoint = _endpoint(settings, registry) if serve else None
        self.where = self._endpoint.where if self._endpoint else ""
        self._m["crawler_download_processes"].set(1)

    def pool(self, size: int) -> None:
        self._m["crawler_download_pool_size"].set(size)

    def in_flight(self, count: int) -> None:
        self._m["crawler_download_in_flight"].set(count)

    def reported(self, results: Sequence[Result]) -> None:
        # Counters once per batch: in a multi-process node each write is a write to a
        # shared file (about 1.5 us); the histograms need one per image.
        m = self._m
        stored = size = 0
        for result in results:
            if result.local:
                reason = reason_label(result.error)
                m["crawler_download_images_handed_back_total"].labels(reason).inc()
                continue
            if result.elapsed is not None:
                m["crawler_download_fetch_seconds"].observe(result.elapsed)
            if result.stored:
                stored += 1
                size += result.bytes or 0
                m["crawler_download_image_bytes"].observe(result.bytes or 0)
            else:
                m["crawler_download_images_failed_total"].labels(reason_label(result.error)).inc()
        if stored:
            m["crawler_download_images_stored_total"].inc(stored)
            m["crawler_download_bytes_total"].inc(size)

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        if self._endpoint is not None:
            self._endpoint.wait_for_scrape(seconds, cancelled)

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()


class ProcessGroupMetrics:
    """The endpoint of a downloader node of several processes, in its parent: the sum
    of what its processes write to a folder of its own, removed at ``close``."""

    def __init__(self, settings: MetricsConfig) -> None:
        self.folder = tempfile.mkdtemp(prefix="crawler-metrics-")
        try:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.folder)
            self._endpoint = _endpoint(settings, registry)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.where = self._endpoint.where

    def child_environment(self) -> dict[str, str]:
        return {METRICS_DIR_ENV: self.folder, LIBRARY_DIR_ENV: self.folder}

    def process_ended(self, pid: int) -> None:
        """A process is gone: its gauges leave the sums (its counters stay counted)."""
        mark_process_dead(pid, self.folder)

    def linger(self, seconds: float, cancelled: Callable[[], bool] = never) -> None:
        self._endpoint.wait_for_scrape(seconds, cancelled)

    def close(self) -> None:
        self._endpoint.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
