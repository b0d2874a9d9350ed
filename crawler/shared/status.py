"""``crawler status`` and ``crawler export`` of a crawl shared through Redis.

``crawl_status`` reads the figures of every partition, the live harvesters and what
each owns, and the nodes; ``format_shared_status`` is pure, for the terminal.
``shared_records`` yields the crawl's whole manifest, one record per image URL,
whichever harvester recorded it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crawler.config import Config
from crawler.errors import ConfigError
from crawler.output.export import export_records
from crawler.output.images import ImageFiles
from crawler.shared.connection import open_redis, unavailable
from crawler.shared.keys import CrawlKeys, valid_crawl_name
from crawler.shared.store import SharedCrawl
from crawler.urls import without_userinfo

FIGURES = ("open", "stored", "failed", "pages_done", "pages_failed", "pages_skipped")


def crawl_status(store: SharedCrawl) -> dict[str, Any]:
    counts = store.counts()
    flows = store.waiting_counts()
    totals = {name: sum(c.get(name, 0) for c in counts) for name in FIGURES}
    for name in ("released", "pages_queued", "later", "in_flight"):
        totals[name] = sum(f[name] for f in flows)
    owners = store.owners()
    now = time.time()
    live = store.heartbeat_list()
    nodes = {
        node: {
            "host": info.get("host"),
            "pid": info.get("pid"),
            "seen_s": round(now - info.get("seen", now), 1),
        }
        for node, info in store.nodes().items()
    }
    state = store.state()
    return {
        "crawl": store.keys.name,
        "partitions": store.keys.partitions,
        "finished": state.get("finished") == "1",
        "figures": totals,
        "harvesters": {name: Counter(owners)[name] for name in live},
        "unowned_partitions": sum(owner is None for owner in owners),
        "nodes": nodes,
    }


def format_shared_status(status: dict[str, Any], where: str) -> str:
    f = status["figures"]
    lines = [
        f"crawl {status['crawl']} in redis at {where}: "
        + ("finished" if status["finished"] else "running"),
        f"  pages: {f['pages_done']} fetched, {f['pages_failed']} failed, "
        f"{f['pages_skipped']} skipped, {f['pages_queued']} queued or in flight",
        f"  images: {f['stored']} stored, {f['failed']} failed, {f['open']} open "
        f"({f['released']} released, {f['in_flight']} in flight, {f['later']} to retry)",
        f"  harvesters: {len(status['harvesters'])} live, "
        f"{status['unowned_partitions']} of {status['partitions']} partitions unowned",
    ]
    for name, owned in sorted(status["harvesters"].items()):
        lines.append(f"    {name}: {owned} partitions")
    lines.append(f"  nodes: {len(status['nodes'])}")
    for node, info in sorted(status["nodes"].items()):
        lines.append(f"    {node}: seen {info['seen_s']} s ago")
    return "\n".join(lines)


def shared_records(store: SharedCrawl) -> Iterator[dict[str, Any]]:
    for number in range(store.keys.partitions):
        yield from store.records(number)


def _open(config: Config) -> SharedCrawl:
    """The store of ``config.shared``'s crawl (``ConfigError`` when it does not exist)."""
    shared = config.shared
    where = without_userinfo(shared.broker)
    if not valid_crawl_name(shared.crawl_name):
        raise ConfigError("--broker redis://... needs --crawl NAME (letters, digits, ._-)")
    client = open_redis(shared.broker, shared, config.tls)
    with unavailable(where):
        settings = SharedCrawl(client, CrawlKeys(shared.crawl_name, 1)).settings()
    if settings is None:
        raise ConfigError(f"crawl {shared.crawl_name} does not exist in redis at {where}")
    return SharedCrawl(client, CrawlKeys(shared.crawl_name, int(settings["partitions"])))


def fetch_shared_status(config: Config) -> dict[str, Any]:
    store = _open(config)
    with unavailable(without_userinfo(config.shared.broker)):
        return crawl_status(store)


def export_shared(config: Config, fmt: str, dest: Path | None, images: str | None) -> int:
    """The whole crawl's manifest as ``fmt`` (``output.export``); rows written.
    ``images``: where the stored files are (default: this machine's OUT)."""
    store = _open(config)
    files = ImageFiles(config.output.out_dir, images)
    with unavailable(without_userinfo(config.shared.broker)):
        return export_records(shared_records(store), fmt, dest, files)
