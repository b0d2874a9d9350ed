"""The harvester node: crawl pages, queue image tasks, serve them, record the results.

One main loop owns all state. Page fetching and parsing run in a small thread pool so
that the loop (and the manager's server threads answering downloaders) never wait on
a slow page. The loop ends when no page is left to fetch and every task is final;
then leases answer ``done`` and the harvester waits (``linger_seconds`` at most) for
the connected downloaders to hear it before it exits.
"""

from __future__ import annotations

import fcntl
import signal
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

from crawler.broker import Broker, Task
from crawler.config import Config, parse_address
from crawler.errors import ConfigError, StateError
from crawler.pages import PageResult, fetch_page
from crawler.progress import ProgressLog
from crawler.serving import BrokerServer
from crawler.storage import MANIFEST_NAME, Manifest
from crawler.urls import host_of, normalize

LOOP_TICK = 0.1


class Interrupted(Exception):
    """SIGTERM arrived: stop like Ctrl-C does."""


def _raise_interrupted(_signum: int, _frame: Any) -> None:
    raise Interrupted


def check_seeds(seeds: list[str]) -> list[str]:
    """Normalized seed URLs; a seed that is not an http(s) URL is a user error."""
    normalized = []
    for seed in seeds:
        url = normalize(seed)
        if url is None:
            raise ConfigError(f"seed is not an http(s) URL: {seed!r}")
        normalized.append(url)
    if not normalized:
        raise ConfigError("give at least one seed URL")
    return normalized


def lock_state(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the state folder for as long as the harvester runs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "harvester.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateError(f"another harvester is using the state folder {state_dir}") from None
    return handle


class Harvester:
    def __init__(self, config: Config, seeds: list[str], authkey: bytes) -> None:
        self.config = config
        self.crawl = config.crawl
        self.seeds = check_seeds(seeds)
        self.authkey = authkey
        self.allowed_hosts = {host_of(url) for url in self.seeds} | set(self.crawl.extra_hosts)
        self.frontier: deque[tuple[str, int]] = deque((url, 0) for url in self.seeds)
        self.seen_pages: set[str] = set(self.seeds)
        self.in_flight: dict[Future[PageResult], str] = {}
        self.pages_started = 0
        self.totals = {"pages": 0, "page_errors": 0, "stored": 0, "failed": 0, "bytes": 0}
        self._stored_at_last_totals = 0
        self.broker = Broker(
            config.queue.lease_seconds, config.queue.max_attempts, config.queue.node_timeout
        )

    def run(self) -> int:
        address = parse_address(self.config.queue.listen, "listen")
        server = BrokerServer(self.broker, address, self.authkey)  # a busy port fails first
        try:
            lock = self._open_outputs()
        except BaseException:
            server.stop()
            raise
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
        started = time.monotonic()
        try:
            server.start()
            self.log.event(
                "crawl_started", seeds=" ".join(self.seeds), listen=self.config.queue.listen
            )
            print(
                f"harvester: serving tasks on {server.address[0]}:{server.address[1]}; "
                f"progress log {self.config.output.log_path}",
                file=sys.stderr,
                flush=True,
            )
            with ThreadPoolExecutor(self.crawl.page_workers, "page") as pages:
                self._crawl(pages)
            self._linger()
            elapsed = time.monotonic() - started
            self._log_totals(elapsed)
            self.log.event("crawl_finished", seconds=round(elapsed, 2), **self.totals)
            print(self.summary(elapsed), flush=True)
            return 0
        except (KeyboardInterrupt, Interrupted):
            self.log.event("crawl_interrupted", **self.totals)
            raise KeyboardInterrupt from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.stop()
            self.manifest.close()
            self.log.close()
            lock.close()

    def _open_outputs(self) -> IO[str]:
        """Lock the state folder and open the manifest and log; nothing is written when
        the folders are unusable or already hold an earlier crawl."""
        out = self.config.output.out_dir
        manifest_path = out / MANIFEST_NAME
        try:
            if manifest_path.exists() and manifest_path.stat().st_size > 0:
                raise StateError(
                    f"{manifest_path} already holds an earlier crawl; choose another --out "
                    "or move it away"
                )
            lock = lock_state(self.config.output.state_dir)
            self.manifest = Manifest(out)
            self.log = ProgressLog(self.config.output.log_path)
        except OSError as exc:
            raise StateError(f"cannot write to {exc.filename or out}: {exc.strerror}") from None
        return lock

    # -- the main loop -------------------------------------------------------------

    def _crawl(self, pages: ThreadPoolExecutor) -> None:
        last_totals = time.monotonic()
        while True:
            self._start_pages(pages)
            if self.in_flight:
                finished, _ = wait(self.in_flight, timeout=LOOP_TICK, return_when=FIRST_COMPLETED)
                for future in finished:
                    del self.in_flight[future]
                    self._handle_page(future.result())
            else:
                time.sleep(LOOP_TICK)
            self.broker.maintain()
            self._record_updates()
            now = time.monotonic()
            if now - last_totals >= self.config.output.totals_interval:
                self._log_totals(now - last_totals)
                last_totals = now
            if not self.frontier and not self.in_flight and self.broker.all_final():
                self.broker.close()
                return

    def _start_pages(self, pages: ThreadPoolExecutor) -> None:
        budget = self.crawl.max_pages or float("inf")
        while self.frontier and len(self.in_flight) < self.crawl.page_workers * 2:
            if self.pages_started >= budget:
                self.frontier.clear()
                return
            url, depth = self.frontier.popleft()
            self.pages_started += 1
            self.in_flight[pages.submit(fetch_page, url, depth, self.crawl)] = url

    def _handle_page(self, page: PageResult) -> None:
        if page.final_url and page.final_url != page.url:
            if page.depth == 0:  # a seed that redirects (http -> https, say) moves the scope
                self.allowed_hosts.add(host_of(page.final_url))
            self.seen_pages.add(page.final_url)
        if page.is_image:
            self._queue_images([(page.url, page.url, "link")])
            return
        if page.error == "not_html":
            self.log.event("page_skipped", url=page.url, content_type=page.content_type)
            return
        if page.error:
            if page.depth == 0:  # a seed: the user should hear about it at once
                print(f"harvester: seed {page.url} failed: {page.error}", file=sys.stderr)
            self.totals["page_errors"] += 1
            self.log.event("page_failed", url=page.url, status=page.status, error=page.error)
            return
        self.totals["pages"] += 1
        self.log.event(
            "page_fetched",
            url=page.url,
            status=page.status,
            depth=page.depth,
            images=len(page.images),
            links=len(page.links),
            truncated=page.truncated or None,
        )
        self._queue_images([(ref.url, page.url, ref.kind) for ref in page.images])
        if page.depth >= self.crawl.max_depth:
            return
        for link in page.links:
            if link not in self.seen_pages and self._in_scope(link):
                self.seen_pages.add(link)
                self.frontier.append((link, page.depth + 1))

    def _in_scope(self, url: str) -> bool:
        return not self.crawl.same_host or host_of(url) in self.allowed_hosts

    def _queue_images(self, items: list[tuple[str, str, str]]) -> None:
        for task in self.broker.add_tasks(items):
            self.log.event("queued", url=task.url, page=task.page, kind=task.kind)

    # -- results -------------------------------------------------------------------

    def _record_updates(self) -> None:
        finished, events = self.broker.take_updates()
        for name, fields in events:
            self.log.event(name, **fields)
        for task in finished:
            self._record_task(task)

    def _record_task(self, task: Task) -> None:
        result = task.result or {}
        record = {
            "url": task.url,
            "page": task.page,
            "kind": task.kind,
            "attempts": task.attempts,
            "outcome": task.state,
            "status": result.get("status"),
            "error": result.get("error"),
            "path": result.get("path") if task.state == "stored" else None,
            "sha256": result.get("sha256"),
            "bytes": result.get("bytes"),
            "content_type": result.get("content_type"),
            "width": result.get("width"),
            "height": result.get("height"),
            "node": result.get("node"),
            "elapsed": result.get("elapsed"),
        }
        self.manifest.write(record)
        if task.state == "stored":
            self.totals["stored"] += 1
            self.totals["bytes"] += record["bytes"] or 0
            self.log.event(
                "stored",
                url=task.url,
                bytes=record["bytes"],
                node=record["node"],
                path=record["path"],
                elapsed=record["elapsed"],
            )
        else:
            self.totals["failed"] += 1
            self.log.event(
                "failed",
                url=task.url,
                status=record["status"],
                error=record["error"],
                node=record["node"],
                attempts=task.attempts,
            )

    def _log_totals(self, interval: float) -> None:
        counts = self.broker.counts()
        rate = (self.totals["stored"] - self._stored_at_last_totals) / interval if interval else 0.0
        self._stored_at_last_totals = self.totals["stored"]
        self.log.event(
            "totals",
            pages=self.totals["pages"],
            page_errors=self.totals["page_errors"],
            frontier=len(self.frontier) + len(self.in_flight),
            queued=counts["tasks"],
            leased=counts["leased"],
            waiting=counts["waiting"],
            stored=self.totals["stored"],
            failed=self.totals["failed"],
            bytes=self.totals["bytes"],
            nodes=counts["nodes"],
            images_per_s=round(rate, 1),
        )

    def _linger(self) -> None:
        """Give connected downloaders up to ``linger_seconds`` to hear that work is done
        and say goodbye."""
        deadline = time.monotonic() + self.config.queue.linger_seconds
        while time.monotonic() < deadline and self.broker.counts()["nodes"]:
            time.sleep(LOOP_TICK)
            self.broker.maintain()
            self._record_updates()
        self._record_updates()

    def summary(self, elapsed: float) -> str:
        counts = self.broker.counts()
        rate = self.totals["stored"] / elapsed if elapsed > 0 else 0.0
        return (
            f"crawl finished: {self.totals['pages']} pages ({self.totals['page_errors']} failed), "
            f"{counts['tasks']} images found, {self.totals['stored']} stored, "
            f"{self.totals['failed']} failed, {self.totals['bytes'] / 1e6:.1f} MB, "
            f"{elapsed:.1f} s, {rate:.1f} images/s"
        )
