"""Metrics for operators: Prometheus endpoints on ``crawler harvest`` and ``crawler
download`` (``--metrics HOST:PORT``), off by default.

The factories pick the implementation from the settings: ``NoMetrics`` when
``metrics`` is empty (prometheus_client is then not even imported), else the
Prometheus one, bound at once (a port in use is a ``ConfigError``). The names,
types and labels of every metric are in ``catalog.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler.config import MetricsConfig
from crawler.metrics.base import (
    FiguresSource,
    HarvestMetrics,
    NodeMetrics,
    NoMetrics,
    child_process,
)

if TYPE_CHECKING:
    from crawler.metrics.prometheus import ProcessGroupMetrics


def harvest_metrics(settings: MetricsConfig, figures: FiguresSource) -> HarvestMetrics:
    """The harvester's metrics; ``figures`` is read at each scrape."""
    if not settings.metrics:
        return NoMetrics()
    from crawler.metrics.prometheus import PrometheusHarvestMetrics

    return PrometheusHarvestMetrics(settings, figures)


def node_metrics(settings: MetricsConfig) -> NodeMetrics:
    """A downloader process's metrics: served by itself, or, in a process of a
    multi-process node, written for its parent to serve (whatever ``settings`` say)."""
    if child_process():
        from crawler.metrics.prometheus import PrometheusNodeMetrics

        return PrometheusNodeMetrics(settings, serve=False)
    if not settings.metrics:
        return NoMetrics()
    from crawler.metrics.prometheus import PrometheusNodeMetrics

    return PrometheusNodeMetrics(settings)


def process_group_metrics(settings: MetricsConfig) -> ProcessGroupMetrics | None:
    """The endpoint of a multi-process node, in its parent (None when off)."""
    if not settings.metrics:
        return None
    from crawler.metrics.prometheus import ProcessGroupMetrics

    return ProcessGroupMetrics(settings)
