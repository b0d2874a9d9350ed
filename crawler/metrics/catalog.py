"""Every metric the crawler exports: name, type, labels and help, in one table.

The exporters build their metrics from ``METRICS``, the README's "Metrics" table is
checked against it, and so is the Grafana dashboard's every query: a metric has one
name everywhere. Names follow Prometheus' conventions: the ``crawler_`` prefix,
``_total`` on counters, base units (seconds, bytes) in the name.

Labels are bounded (``reason_label``, ``top_labels``): a hostile site cannot make a
metric grow a series per URL, error text or host.

Pure: no I/O, no prometheus_client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crawler.records import error_code

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
HARVESTER, DOWNLOADER = "harvest", "download"
OTHER = "other"  # the label value that sums what a bounded label leaves out

# Bucket bounds, in seconds and bytes.
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
SIZE_BUCKETS = (1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # COUNTER, GAUGE or HISTOGRAM
    side: str  # HARVESTER or DOWNLOADER: which command's endpoint serves it
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


def _spec(name, kind, side, help, labels=(), buckets=()) -> MetricSpec:
    return MetricSpec(name, kind, side, help, tuple(labels), tuple(buckets))


H, D = HARVESTER, DOWNLOADER
METRICS: tuple[MetricSpec, ...] = (
    # -- the harvester: what happened since it started ------------------------------
    _spec("crawler_pages_fetched_total", COUNTER, H, "Pages fetched and parsed."),
    _spec("crawler_pages_failed_total", COUNTER, H, "Pages failed for good.", ["reason"]),
    _spec(
        "crawler_pages_skipped_total",
        COUNTER,
        H,
        "Pages not crawled as pages: robots_disallowed, not_html, or image (a link to "
        "an image without an image extension, queued as an image).",
        ["reason"],
    ),
    _spec(
        "crawler_page_retries_total",
        COUNTER,
        H,
        "Page fetches that failed for a passing reason and are tried again.",
        ["reason"],
    ),
    _spec(
        "crawler_pages_rendered_total",
        COUNTER,
        H,
        "Pages rendered in the browser (--render), by outcome: ok, timeout (what the page "
        "showed by then was read) or failed.",
        ["outcome"],
    ),
    _spec(
        "crawler_rendered_images_total",
        COUNTER,
        H,
        "Image URLs only rendering found (not in the page as served).",
    ),
    _spec(
        "crawler_script_pages_unrendered_total",
        COUNTER,
        H,
        "Pages whose scripts look like they build images or links and that were not "
        "rendered (--render never, or auto stopped on their host).",
    ),
    _spec(
        "crawler_render_seconds",
        HISTOGRAM,
        H,
        "Time to render a page in the browser, scrolling and settling included.",
        buckets=FETCH_BUCKETS,
    ),
    _spec("crawler_images_queued_total", COUNTER, H, "Image URLs queued as tasks (each once)."),
    _spec("crawler_images_stored_total", COUNTER, H, "Images stored (final)."),
    _spec("crawler_images_failed_total", COUNTER, H, "Images failed (final).", ["reason"]),
    _spec("crawler_stored_bytes_total", COUNTER, H, "Bytes of the images stored."),
    _spec(
        "crawler_image_retries_total",
        COUNTER,
        H,
        "Image fetches that failed for a passing reason and go back to the queue.",
    ),
    _spec(
        "crawler_leases_expired_total",
        COUNTER,
        H,
        "Leases taken back from nodes: past their deadline, or their node lost or gone.",
        ["reason"],
    ),
    _spec(
        "crawler_nodes_joined_total", COUNTER, H, "Downloader processes that joined (or came back)."
    ),
    _spec("crawler_nodes_lost_total", COUNTER, H, "Downloader processes declared lost (silent)."),
    _spec("crawler_nodes_left_total", COUNTER, H, "Downloader processes that said goodbye."),
    _spec(
        "crawler_page_fetch_seconds",
        HISTOGRAM,
        H,
        "Time to fetch a page (request to last byte read).",
        buckets=FETCH_BUCKETS,
    ),
    _spec(
        "crawler_image_queued_to_stored_seconds",
        HISTOGRAM,
        H,
        "Time from an image being queued to it being stored.",
        buckets=WAIT_BUCKETS,
    ),
    # -- the harvester: the crawl's state now (whole crawl, across restarts) -------------
    _spec(
        "crawler_tasks",
        GAUGE,
        H,
        "Image tasks by state: waiting, leased, stored, failed (the last two are final).",
        ["state"],
    ),
    _spec(
        "crawler_frontier_pages",
        GAUGE,
        H,
        "Pages queued or being fetched, as of the harvester's last totals (every totals_interval).",
    ),
    _spec("crawler_nodes_connected", GAUGE, H, "Downloader processes connected."),
    _spec(
        "crawler_hosts",
        GAUGE,
        H,
        "Hosts by politeness state: busy (requests in flight), throttled (slowed after "
        "429/503), paused (waiting out Retry-After or a pause), down (not answering).",
        ["state"],
    ),
    _spec(
        "crawler_host_tasks",
        GAUGE,
        H,
        "Image tasks per host and state, for the hosts with the most tasks "
        '(metrics_top_hosts); the rest summed as host="other".',
        ["host", "state"],
    ),
    _spec(
        "crawler_node_tasks",
        GAUGE,
        H,
        'Per downloader process (metrics_top_nodes of them; the rest as node="other"): '
        "tasks it holds (leased), and stored or failed since it joined.",
        ["node", "state"],
    ),
    _spec(
        "crawler_node_paused",
        GAUGE,
        H,
        "Downloader processes paused for faults of their own (their disk, say).",
    ),
    _spec("crawler_crawl_finished", GAUGE, H, "1 once every page and image is done."),
    # -- a downloader node (all its processes summed) -------------------------------
    _spec("crawler_download_images_stored_total", COUNTER, D, "Images stored and reported."),
    _spec(
        "crawler_download_images_failed_total",
        COUNTER,
        D,
        "Failed fetches reported, by reason (the harvester retries those that may pass).",
        ["reason"],
    ),
    _spec(
        "crawler_download_images_handed_back_total",
        COUNTER,
        D,
        "Tasks handed back unfetched or unstored for a fault of this node (no attempt used).",
        ["reason"],
    ),
    _spec("crawler_download_bytes_total", COUNTER, D, "Bytes of the images stored."),
    _spec("crawler_download_in_flight", GAUGE, D, "Tasks leased and not yet finished."),
    _spec("crawler_download_pool_size", GAUGE, D, "Downloads that may run at once."),
    _spec("crawler_download_processes", GAUGE, D, "Live processes of this node."),
    _spec(
        "crawler_download_fetch_seconds",
        HISTOGRAM,
        D,
        "Time to fetch, check and stage one image.",
        buckets=FETCH_BUCKETS,
    ),
    _spec(
        "crawler_download_image_bytes",
        HISTOGRAM,
        D,
        "Size of the images stored.",
        buckets=SIZE_BUCKETS,
    ),
)
BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in METRICS}

_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_HTTP = re.compile(r"http_([1-5][0-9][0-9])")


def reason_label(error: str | None) -> str:
    """An error's code as a label value: one of the crawler's own codes (identifiers
    it writes itself) or ``http_NNN`` for a status 100-599; anything else (a status
    a hostile server made up, say) is ``other``, so the values stay few."""
    code = error_code(error)
    if code.startswith("http_"):
        return code if _HTTP.fullmatch(code) else OTHER
    return code if _CODE.fullmatch(code) else OTHER


def top_labels(
    rows: Iterable[tuple[str, Mapping[str, float]]], limit: int
) -> dict[str, dict[str, float]]:
    """Keep the ``limit`` keys whose values sum highest (ties by key), each with its
    values; the others are summed under ``other``. ``rows``: (key, {field: value})."""
    ranked = sorted(rows, key=lambda row: (-sum(row[1].values()), row[0]))
    kept: dict[str, dict[str, float]] = {}
    rest: dict[str, float] = {}
    for key, values in ranked:
        if len(kept) < limit and key != OTHER:
            kept[key] = dict(values)
        else:
            for name, value in values.items():
                rest[name] = rest.get(name, 0) + value
    if rest:
        kept[OTHER] = rest
    return kept
