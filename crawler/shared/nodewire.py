"""The downloader nodes' wire to a crawl shared through Redis: a ``RawWire``
(``wire/base.py``), so a node's fetch, verify, store and report do not change.

A lease is a pending entry of a partition's ``ready`` stream in the ``nodes`` group;
the node's task id packs the partition and the entry (``keys.task_id``), so leases
survive a reconnect. Leases come from the partitions in turn (a different first one
each call, at most a fair share of the batch from each), and tasks whose lease ran
out (a node killed, cut off) are claimed again by any node that asks. A heartbeat
resets the idle time of the node's entries; a result moves its entry to the owner's
``results`` in one script, and only the first result of a task is kept.
"""

from __future__ import annotations

import json
import time
from typing import Any

from crawler.config import SharedConfig, TlsConfig
from crawler.errors import BrokerUnavailable
from crawler.shared.connection import open_redis, unavailable
from crawler.shared.keys import CrawlKeys, split_task_id, task_id, valid_crawl_name
from crawler.shared.store import Entry, SharedCrawl, now_ms
from crawler.urls import without_userinfo

CHUNK = 8  # partitions asked per round trip of a lease
POLL_FIRST, POLL_MAX = 0.02, 0.2  # seconds between looks for work while there is none
SEEN_EVERY = 5.0  # seconds between a node's "seen" marks in the crawl's node table


class RedisWire:
    """``RawWire`` of crawl ``shared.crawl_name`` in the Redis at ``url``."""

    def __init__(self, url: str, shared: SharedConfig, tls: TlsConfig | None = None) -> None:
        self.where = f"{without_userinfo(url)} (crawl {shared.crawl_name})"
        if not valid_crawl_name(shared.crawl_name):
            from crawler.errors import ConfigError

            raise ConfigError("--broker redis://... needs --crawl NAME (letters, digits, ._-)")
        self._redis_where = without_userinfo(url)
        self.client = open_redis(url, shared, tls)
        self.name = shared.crawl_name
        self.store: SharedCrawl | None = None
        self.settings: dict[str, Any] = {}
        self.turn = 0
        self.last_reclaim = 0.0
        self.last_seen: dict[str, float] = {}

    def _crawl(self) -> SharedCrawl:
        if self.store is None:
            probe = SharedCrawl(self.client, CrawlKeys(self.name, 1))
            with unavailable(self._redis_where):
                settings = probe.settings()
            if settings is None:
                raise BrokerUnavailable(
                    f"crawl {self.name} has not been started in redis at {self._redis_where}"
                )
            self.settings = settings
            self.store = SharedCrawl(self.client, CrawlKeys(self.name, int(settings["partitions"])))
        return self.store

    def join(self, node: str, info: dict[str, Any]) -> Any:
        store = self._crawl()
        with unavailable(self._redis_where):
            store.node_seen(node, info)
        self.last_seen[node] = time.monotonic()
        self.info = info
        settings = self.settings
        return {
            "lease_seconds": settings["lease_seconds"],
            "heartbeat_seconds": settings["heartbeat_seconds"],
            "user_agent": settings.get("user_agent", ""),
            "address_policy": settings.get("address_policy"),
        }

    def _seen(self, store: SharedCrawl, node: str) -> None:
        now = time.monotonic()
        if now - self.last_seen.get(node, 0.0) >= SEEN_EVERY:
            self.last_seen[node] = now
            store.node_seen(node, getattr(self, "info", {}))

    def lease_batch(self, node: str, limit: int, wait: float) -> Any:
        store = self._crawl()
        deadline = time.monotonic() + max(0.0, min(wait, 30.0))
        pause = POLL_FIRST
        with unavailable(self._redis_where):
            self._seen(store, node)
            while True:
                tasks = self._lease(store, node, max(1, limit))
                if tasks:
                    return {"tasks": tasks, "done": False}
                if store.client.hget(store.keys.state, "finished") is not None:
                    return {"tasks": [], "done": True}
                if time.monotonic() + pause > deadline:
                    return {"tasks": [], "done": False}
                time.sleep(pause)
                pause = min(pause * 2, POLL_MAX)

    def _lease(self, store: SharedCrawl, node: str, limit: int) -> list[list[Any]]:
        partitions = store.keys.partitions
        lease_ms = int(float(self.settings["lease_seconds"]) * 1000)
        leased: list[tuple[int, Entry]] = []
        now = time.monotonic()
        order = [(self.turn + step) % partitions for step in range(partitions)]
        self.turn = (self.turn + 1) % partitions
        if now - self.last_reclaim >= lease_ms / 4000:
            self.last_reclaim = now
            for start in range(0, partitions, CHUNK * 4):
                leased += store.reclaim(node, order[start : start + CHUNK * 4], lease_ms, limit)
                if len(leased) >= limit:
                    break
        for start in range(0, partitions, CHUNK):
            remaining = limit - len(leased)
            if remaining <= 0:
                break
            chunk = order[start : start + CHUNK]
            leased += store.lease(node, chunk, -(-remaining // len(chunk)))
        wall = now_ms()
        tasks = []
        for number, entry in leased:
            task = json.loads(entry.fields.get("t") or "{}")
            not_before = int(entry.fields.get("nb") or 0)
            start_in = round(max(0, not_before - wall) / 1000, 3) if not_before else None
            tasks.append(
                [task_id(number, entry.id), task.get("u", ""), start_in, 0.0, task.get("r")]
            )
        return tasks

    def extend_leases(self, node: str, ids: list[int]) -> Any:
        store = self._crawl()
        entries: dict[int, list[str]] = {}
        for number in ids:
            if type(number) is int and number >= 0:
                partition, entry = split_task_id(number)
                if partition < store.keys.partitions:
                    entries.setdefault(partition, []).append(entry)
        with unavailable(self._redis_where):
            self._seen(store, node)
            if entries:
                store.extend(node, entries)
        return True

    def report_results(self, node: str, results: list[dict[str, Any]]) -> Any:
        store = self._crawl()
        grouped: dict[int, list[tuple[str, str]]] = {}
        for result in results:
            number = result.get("id") if isinstance(result, dict) else None
            if type(number) is not int or number < 0:
                continue
            partition, entry = split_task_id(number)
            if partition < store.keys.partitions:
                grouped.setdefault(partition, []).append((entry, json.dumps(result)))
        with unavailable(self._redis_where):
            return store.report(node, grouped)

    def leave(self, node: str) -> Any:
        store = self._crawl()
        with unavailable(self._redis_where):
            store.node_gone(node)
        return True

    def status(self) -> Any:
        from crawler.shared.status import crawl_status

        with unavailable(self._redis_where):
            return crawl_status(self._crawl())

    def close(self) -> None:
        self.client.close()
