"""One harvester of a crawl shared through Redis (``--broker redis://... --crawl NAME``).

For the partitions it owns (``ownership.py``) it does what the embedded harvester
does for the whole crawl: fetch and parse their pages, de-duplicate their image
URLs, hold their hosts to the politeness limits (concurrency, delay, Crawl-delay,
Retry-After, backoff, a host that is down), read robots.txt before releasing a host's
images, release image tasks to the nodes and settle their results into final records.
Links and image URLs found for hosts of other partitions go to those partitions in
Redis. Its own ``OUT/manifest.jsonl`` and progress log hold what it recorded; the
crawl's whole manifest is in Redis (``crawler export --broker``).

What it keeps in memory is only what it can lose: pages it read and has not started
(pending in Redis: a successor claims them), the politeness state (rebuilt from the
partition's in-flight counts on a takeover), and a page's failed tries (a page taken
over starts its tries again). It exits 0 when the whole crawl is finished.

Not supported with ``--broker redis`` (refused at start, ``unsupported``): rendering,
recrawls, ``--retry-failed``, dataset crawls (``--for-dataset``, ``--variants``),
sitemaps (seeds only: ``--no-sitemaps`` is implied) and ``--max-images``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from crawler.broker.board import MAX_LOST_LEASES, Task, final_record, retry_delay
from crawler.broker.politeness import Politeness
from crawler.config import Config, per_core
from crawler.errors import ConfigError
from crawler.harvest.harvester import check_seeds
from crawler.harvest.parsing import PageParser
from crawler.harvest.scope import Scope
from crawler.output.manifest import Manifest
from crawler.output.progress import ProgressLog
from crawler.records import FAILED, STORED, Result, record_line
from crawler.shared.connection import Patience, open_redis
from crawler.shared.keys import CrawlKeys, fingerprint, valid_crawl_name
from crawler.shared.ownership import plan
from crawler.shared.store import NOT_OWNER, Entry, SharedCrawl, now_ms
from crawler.stats import CrawlStats
from crawler.urls import host_of, referer_for, without_userinfo
from crawler.web.pages import PageResult, StylesheetCache, check_robots, fetch_page, fetch_robots
from crawler.web.retries import next_try_in
from crawler.web.robots import ALLOWED, DISALLOWED, UNREACHABLE, RobotsCache, robots_url
from crawler.web.safehttp import session_options

SETTINGS_VERSION = 1
TICK = 0.05  # seconds the loop waits for a page when it has nothing else to do
RESULTS_PER_ROUND = 1000
MAX_RELEASE = 500  # tasks of one host released at once at most
ROBOTS_RECHECK = 30.0  # seconds between reads of a robots.txt that could not be read
EXIT_DONE, EXIT_NO_PAGES = 0, 3


def unsupported(config: Config, retry_failed: bool = False, recrawl: bool = False) -> list[str]:
    """What a shared crawl cannot do that these settings ask for (empty: none)."""
    asked = {
        "--render auto|always": config.render.render != "never",
        "--recrawl": recrawl,
        "--retry-failed": retry_failed,
        "--for-dataset": config.dataset.for_dataset,
        "--variants largest": config.dataset.variants != "all",
        "--max-images": config.crawl.max_images != 0,
    }
    return [name for name, on in asked.items() if on]


def crawl_settings(config: Config, seeds: list[str], partitions: int) -> dict[str, Any]:
    """What every harvester and node of the crawl shares, written by the first one."""
    queue, crawl = config.queue, config.crawl
    return {
        "version": SETTINGS_VERSION,
        "partitions": partitions,
        "seeds": seeds,
        "lease_seconds": queue.lease_seconds,
        "heartbeat_seconds": max(1.0, min(queue.lease_seconds, queue.node_timeout) / 3),
        "max_attempts": queue.max_attempts,
        "user_agent": crawl.user_agent,
        "address_policy": {
            "allow_private": crawl.allow_private,
            "allow_networks": list(crawl.allow_networks),
        },
        "started_at": time.time(),
    }


def task_json(url: str, page: str, kind: str, **more: Any) -> str:
    return json.dumps({"u": url, "g": page, "k": kind, **more}, separators=(",", ":"))


@dataclass
class OwnedPartition:
    """What this harvester keeps about a partition it owns."""

    number: int
    deferred: collections.deque[Entry] = field(default_factory=collections.deque)
    retry_at: dict[str, float] = field(default_factory=dict)  # entry -> due (monotonic)
    tries: dict[str, int] = field(default_factory=dict)  # entry -> failed tries


class SharedHarvester:
    """A harvester of shared crawl ``config.shared.crawl_name`` (see the module)."""

    def __init__(
        self, config: Config, seeds: list[str], connect: Callable[..., Any] = open_redis
    ) -> None:
        shared = config.shared
        if not valid_crawl_name(shared.crawl_name):
            raise ConfigError(
                f"--crawl {shared.crawl_name!r}: give the crawl a name of letters, digits "
                "and ._- (at most 64)"
            )
        refused = unsupported(config)
        if refused:
            raise ConfigError(
                f"{', '.join(refused)}: not supported in a crawl shared through Redis yet"
            )
        self.config = config
        self.crawl = config.crawl
        self.seeds = check_seeds(seeds) if seeds else []
        self.where = without_userinfo(shared.broker)
        self.name = shared.crawl_name
        self.me = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"
        self.patience = Patience(f"harvester {self.me}", self.where)
        self.client = self.patience.call(lambda: connect(shared.broker, shared, config.tls))
        session_options(self.crawl, os.environ)  # a CA bundle not there: said now
        self.politeness = Politeness.from_config(config.politeness, lookahead=0.0)
        self.robots = (
            RobotsCache(self.crawl.user_agent, lambda url: fetch_robots(url, self.crawl))
            if self.crawl.obey_robots
            else None
        )
        self.sheets = StylesheetCache(self.crawl, self.robots)
        self.owned: dict[int, OwnedPartition] = {}
        self.in_flight: dict[Future[Any], tuple[int, Entry | None, str]] = {}
        self.robots_checking: set[str] = set()
        self.robots_checked: dict[str, float] = {}  # robots URL -> last read (monotonic)
        self.robots_down: dict[str, float] = {}  # robots URL -> unreadable since
        self.delay_known: set[str] = set()
        self.stats = CrawlStats()
        self.stopping = False
        self.stop_signal: int | None = None
        self.free_rounds: list[int] = []
        self.finished = False

    # -- the run -------------------------------------------------------------------

    def run(self) -> int:
        store = self._open_crawl()
        out = self.config.output.out_dir
        out.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(out)
        self.log = ProgressLog(self.config.output.log_path)
        self.parser = PageParser(per_core(self.crawl.parse_processes))
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        pages = ThreadPoolExecutor(self.crawl.page_workers, thread_name_prefix="page")
        started = time.monotonic()
        try:
            self.log.event(
                "crawl_joined",
                crawl=self.name,
                broker=self.where,
                harvester=self.me,
                seeds=" ".join(self.seeds) or None,
                partitions=store.keys.partitions,
            )
            print(
                f"harvester {self.me}: crawl {self.name} in redis at {self.where} "
                f"({store.keys.partitions} partitions); progress log "
                f"{self.config.output.log_path}",
                file=sys.stderr,
                flush=True,
            )
            self._crawl(store, pages)
        finally:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
            signal.signal(signal.SIGTERM, previous[signal.SIGTERM])
            pages.shutdown(wait=False, cancel_futures=True)
            self.parser.close()
            with contextlib.suppress(Exception):
                self._leave(store)
            elapsed = time.monotonic() - started
            event = "crawl_finished" if self.finished else "crawl_stopped"
            self.log.event(event, elapsed=round(elapsed, 1), **self.stats.fields())
            self.manifest.close()
            self.log.close()
        if self.finished:
            print(f"harvester {self.me}: crawl {self.name} finished; {self._line()}", flush=True)
            return EXIT_DONE
        print(f"harvester {self.me}: stopped; {self._line()}", flush=True)
        return 128 + (self.stop_signal or signal.SIGTERM)

    def _line(self) -> str:
        s = self.stats
        return f"{s.pages} pages, {s.stored} images stored, {s.failed} failed (by this harvester)"

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        self.stop_signal = signum

    def _call(self, operation: Callable[[], Any]) -> Any:
        return self.patience.call(operation, stop=lambda: self.stopping)

    def _open_crawl(self) -> SharedCrawl:
        """The crawl's store: started here with the seeds, or joined."""
        probe = SharedCrawl(self.client, CrawlKeys(self.name, 1))
        settings = self._call(probe.settings)
        if settings is None and not self.seeds:
            raise ConfigError(
                f"crawl {self.name} does not exist in redis at {self.where}: give seed URLs "
                "to start it"
            )
        if settings is None:
            partitions = self.config.shared.partitions
            fresh = crawl_settings(self.config, self.seeds, partitions)
            settings, _ = self._call(lambda: probe.create(fresh))
        if settings.get("version") != SETTINGS_VERSION:
            raise ConfigError(f"crawl {self.name} was made by another version of the crawler")
        store = SharedCrawl(self.client, CrawlKeys(self.name, int(settings["partitions"])))
        self.free_rounds = [0] * store.keys.partitions
        self.scope = Scope(self.crawl, list(settings["seeds"]) + self.seeds)
        if self.seeds:
            self._add_pages(store, [(url, 0, "") for url in self.seeds])
        self._call(lambda: store.mark("started"))
        return store

    def _leave(self, store: SharedCrawl) -> None:
        """Give the partitions back at once (a successor needs not wait for the leases)."""
        for number in list(self.owned):
            store.give_up(number, self.me)
        store.leave(self.me)

    # -- the main loop -------------------------------------------------------------

    def _crawl(self, store: SharedCrawl, pages: ThreadPoolExecutor) -> None:
        lease = self.config.shared.partition_lease
        next_round = next_second = 0.0
        last_totals = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            if now >= next_round:
                self._call(lambda: self._round(store, lease))
                next_round = now + lease / 3
            self._call(lambda: self._start_pages(store, pages))
            self._handle_done_pages(store)
            self._call(lambda: self._settle_results(store))
            self._call(lambda: self._release_tasks(store, pages))
            if now >= next_second:
                next_second = now + 1.0
                for number in list(self.owned):
                    self._call(lambda n=number: store.move_due(n, self.me))
                if not self.in_flight and self._call(store.quiet):
                    self._call(lambda: store.mark("finished"))
                if self._call(store.state).get("finished") == "1":
                    self.finished = True
                    return
            if now - last_totals >= self.config.output.totals_interval:
                last_totals = now
                self.log.event("totals", **self.stats.fields(), partitions=len(self.owned))
            if self.in_flight:
                wait(list(self.in_flight), timeout=TICK, return_when=FIRST_COMPLETED)
            else:
                time.sleep(TICK)

    def _round(self, store: SharedCrawl, lease: float) -> None:
        """Heartbeat, renew the leases, claim and give up partitions (``ownership``)."""
        lease_ms = int(lease * 1000)
        live = store.heartbeat(self.me, lease_ms)
        kept = set(store.renew(sorted(self.owned), self.me, lease_ms))
        for number in set(self.owned) - kept:
            self._drop(number, "lease lost")
        owners = store.owners()
        for number, owner in enumerate(owners):
            self.free_rounds[number] = self.free_rounds[number] + 1 if owner is None else 0
        todo = plan(self.me, live, owners, self.free_rounds)
        for number in todo.give_up:
            self._drop(number, "moved to another harvester")
            store.give_up(number, self.me)
        for number in todo.claim:
            if store.claim(number, self.me, lease_ms):
                self._take_over(store, number)

    def _take_over(self, store: SharedCrawl, number: int) -> None:
        owned = self.owned[number] = OwnedPartition(number)
        owned.deferred.extend(store.claim_pages(number, self.me))
        for host, count in store.busy(number).items():
            state = self.politeness.state(host)
            state.in_flight = max(state.in_flight, count)
        claimed = store.claim_results(number, self.me)
        if claimed:
            self._settle(store, number, claimed)
        self.log.event("partition_taken", partition=number, pages_again=len(owned.deferred) or None)

    def _drop(self, number: int, reason: str) -> None:
        if self.owned.pop(number, None) is not None:
            self.log.event("partition_left", partition=number, reason=reason)

    # -- pages ---------------------------------------------------------------------

    def _start_pages(self, store: SharedCrawl, pages: ThreadPoolExecutor) -> None:
        room = self.crawl.page_workers - len(self.in_flight)
        now = time.monotonic()
        for owned in list(self.owned.values()):
            if room <= 0:
                return
            if len(owned.deferred) < room:
                owned.deferred.extend(store.take_pages(owned.number, self.me, room))
            kept: collections.deque[Entry] = collections.deque()
            while owned.deferred and room > 0:
                entry = owned.deferred.popleft()
                url = entry.fields.get("u", "")
                due = owned.retry_at.get(entry.id, 0.0)
                host = host_of(url)
                if due > now or not self.politeness.room(host, now):
                    kept.append(entry)
                    continue
                if not store.take_page_budget(self.crawl.max_pages):
                    store.finish_pages(owned.number, self.me, [(entry.id, "pages_skipped")])
                    continue
                self.politeness.grant(host, now)
                depth = int(entry.fields.get("d") or 0)
                referer = referer_for(entry.fields.get("r") or None, url, self.crawl.referer)
                future = pages.submit(self._fetch, url, depth, referer)
                self.in_flight[future] = (owned.number, entry, host)
                room -= 1
            owned.deferred.extendleft(reversed(kept))

    def _fetch(self, url: str, depth: int, referer: str | None) -> PageResult:
        return fetch_page(
            url,
            depth,
            self.crawl,
            self.robots,
            self.sheets,
            self.parser.parse,
            referer,
            self.parser.match,
        )

    def _handle_done_pages(self, store: SharedCrawl) -> None:
        for future in [f for f in self.in_flight if f.done()]:
            number, entry, host = self.in_flight.pop(future)
            if entry is None:  # a robots.txt check for the release of images
                self.robots_checking.discard(host)
                with contextlib.suppress(Exception):
                    future.result()
                continue
            self.politeness.release(host, time.monotonic())
            try:
                page = future.result()
            except Exception as exc:  # a bug fetching one page: it fails, the crawl goes on
                page = PageResult(entry.fields.get("u", ""), 0, error=f"error: {exc}")
            self._call(lambda p=page, n=number, e=entry: self._handle_page(store, n, e, p))

    def _handle_page(self, store: SharedCrawl, number: int, entry: Entry, page: PageResult) -> None:
        owned = self.owned.get(number)
        if owned is None:
            return  # the partition moved: its new owner fetches the page again
        if page.depth == 0 and page.final_url and page.final_url != page.url:
            self.scope.add_host(page.final_url)  # a seed that redirects moves the scope
        if page.is_image:
            if self.scope.image_allowed(page.url):
                self._add_images(store, [(page.url, page.url, "link")])
            self._finish(store, owned, entry, "pages_skipped")
            return
        if page.retryable:
            tries = owned.tries.get(entry.id, 0) + 1
            pause = next_try_in(
                tries,
                page.unreachable,
                self.config.queue.max_attempts,
                self.config.politeness.host_down_timeout,
            )
            if pause is not None:
                owned.tries[entry.id] = tries
                owned.retry_at[entry.id] = time.monotonic() + pause
                owned.deferred.append(entry)
                return
        if page.error in ("not_html", DISALLOWED):
            self.log.event("page_skipped", url=page.url, reason=page.error)
            self._finish(store, owned, entry, "pages_skipped")
            return
        if page.error:
            self.stats.count_page(ok=False)
            self.log.event("page_failed", url=page.url, status=page.status, error=page.error)
            if page.depth == 0:
                print(f"harvester: seed {page.url} failed: {page.error}", file=sys.stderr)
            self._finish(store, owned, entry, "pages_failed")
            return
        self.stats.count_page(ok=True)
        refs = page.images + page.held_images + page.refused_images
        images = [ref for ref in refs if self.scope.image_allowed(ref.url)]
        links = page.links + ([] if self.crawl.obey_nofollow else page.nofollow_links)
        self.log.event(
            "page_fetched",
            url=page.url,
            status=page.status,
            depth=page.depth,
            images=len(images),
            links=len(links),
        )
        # Tasks and links first, then the page is done: a crash in between fetches the
        # page again, and what it adds again is de-duplicated.
        self._add_images(store, [(ref.url, page.url, ref.kind) for ref in images])
        if page.depth < self.crawl.max_depth:
            found = [(link, page.depth + 1) for link in links if self.scope.page_allowed(link)]
            base = page.final_url or page.url
            self._add_pages(store, [(url, depth, base) for url, depth in found])
        self._finish(store, owned, entry, "pages_done")

    def _finish(
        self, store: SharedCrawl, owned: OwnedPartition, entry: Entry, outcome: str
    ) -> None:
        owned.tries.pop(entry.id, None)
        owned.retry_at.pop(entry.id, None)
        if store.finish_pages(owned.number, self.me, [(entry.id, outcome)]) == NOT_OWNER:
            self._drop(owned.number, "lease lost")

    def _add_pages(self, store: SharedCrawl, pages: list[tuple[str, int, str]]) -> None:
        by_partition: dict[int, list[tuple[str, int, str]]] = collections.defaultdict(list)
        for page in pages:
            by_partition[store.keys.of_host(host_of(page[0]))].append(page)
        for number, items in by_partition.items():
            store.add_pages(number, items)

    def _add_images(self, store: SharedCrawl, images: list[tuple[str, str, str]]) -> None:
        by_partition: dict[int, list[tuple[str, str, str]]] = collections.defaultdict(list)
        for url, page, kind in images:
            host = host_of(url)
            by_partition[store.keys.of_host(host)].append((url, host, task_json(url, page, kind)))
        for number, items in by_partition.items():
            store.add_images(number, items)

    # -- image tasks ---------------------------------------------------------------

    def _robots_verdict(self, url: str, pages: ThreadPoolExecutor) -> str | None:
        """robots.txt's verdict on an image URL; None while it is being read."""
        if self.robots is None:
            return ALLOWED
        verdict = self.robots.cached_verdict(url)
        robots = robots_url(url)
        now = time.monotonic()
        if verdict == UNREACHABLE:
            since = self.robots_down.setdefault(robots, now)
            if now - since >= self.config.politeness.host_down_timeout:
                return UNREACHABLE  # given up: its images fail
        if verdict is None or (
            verdict == UNREACHABLE and now - self.robots_checked.get(robots, 0.0) >= ROBOTS_RECHECK
        ):
            if robots not in self.robots_checking:
                self.robots_checking.add(robots)
                self.robots_checked[robots] = now
                future = pages.submit(check_robots, robots, self.robots)
                self.in_flight[future] = (-1, None, robots)
            return None
        if verdict == UNREACHABLE:
            return None
        self.robots_down.pop(robots, None)
        host = host_of(url)
        if host not in self.delay_known and self.robots.has_rules(url):
            self.delay_known.add(host)
            self.politeness.set_crawl_delay(host, self.robots.crawl_delay(url))
        return verdict

    def _release_tasks(self, store: SharedCrawl, pages: ThreadPoolExecutor) -> None:
        for number in list(self.owned):
            for host in store.waiting_hosts(number):
                self._release_host(store, number, host, pages)

    def _release_host(
        self, store: SharedCrawl, number: int, host: str, pages: ThreadPoolExecutor
    ) -> None:
        now = time.monotonic()
        room = min(self.politeness.room(host, now, reserve=1), MAX_RELEASE)  # 1: pages
        if room <= 0:
            return
        tasks = [json.loads(raw) for raw in store.peek(number, host, room)]
        if not tasks:
            return
        released: list[tuple[str, int]] = []
        refused: list[tuple[bytes, str]] = []
        finals: list[ManifestLine] = []
        taken = 0
        for task in tasks:
            url = task["u"]
            verdict = self._robots_verdict(url, pages)
            if verdict is None:
                break  # its robots.txt is being read: the rest stays waiting
            taken += 1
            if verdict != ALLOWED:
                error = "robots_unreachable" if verdict == UNREACHABLE else DISALLOWED
                record = self._record(task, FAILED, Result(0, url, error=error))
                refused.append((fingerprint(url), record))
                finals.append(ManifestLine(record, url, FAILED, None, error))
                continue
            start_in = self.politeness.grant(host, now)
            task["l"] = int(task.get("l", 0)) + 1
            referer = referer_for(task.get("g") or None, url, self.crawl.referer)
            if referer is not None:
                task["r"] = referer
            not_before = now_ms() + int(start_in * 1000) if start_in else 0
            released.append((json.dumps(task, separators=(",", ":")), not_before))
        if not taken:
            return
        kept = store.release(number, self.me, host, taken, released, refused)
        if kept == NOT_OWNER:
            for _ in released:
                self.politeness.release(host)
            self._drop(number, "lease lost")
            return
        self._write(finals)

    def _settle_results(self, store: SharedCrawl) -> None:
        for number in list(self.owned):
            entries = store.take_results(number, self.me, RESULTS_PER_ROUND)
            if entries:
                self._settle(store, number, entries)

    def _settle(self, store: SharedCrawl, number: int, entries: list[Entry]) -> None:
        now = time.monotonic()
        items: list[tuple[Any, ...]] = []
        finals: list[ManifestLine | None] = []
        for entry in entries:
            task = json.loads(entry.fields.get("t") or "{}")
            result = Result.from_wire(json.loads(entry.fields.get("r") or "{}"))
            url = task.get("u") or (result.url if result else "")
            host = host_of(url)
            if result is None or not url:  # (a node that is not ours): nothing to learn
                result = Result(0, url, error="bad_result", retryable=True)
            item, final = self._decide(task, result, host, now)
            items.append((entry.id, host, *item))
            finals.append(final)
        became = store.settle(number, self.me, items)
        if became is None:
            self._drop(number, "lease lost")
            return
        self._write([final for final, new in zip(finals, became, strict=True) if new and final])

    def _decide(
        self, task: dict[str, Any], result: Result, host: str, now: float
    ) -> tuple[tuple[Any, ...], ManifestLine | None]:
        """(fingerprint, record, outcome, retry, due) of one result, and its line."""
        url = task["u"]
        self.politeness.release(host, now)
        local = not result.stored and bool(result.local)
        spared = False if local else self.politeness.feedback(host, result, now)
        failures = int(task.get("f", 0))
        if result.stored:
            state = STORED
        elif local:
            handbacks = int(task.get("h", 0)) + 1
            if handbacks < MAX_LOST_LEASES:
                task["h"] = handbacks
                return self._again(task, 0.0), None
            state = FAILED
        elif result.retryable and spared:
            return self._again(task, 0.0), None
        elif result.retryable and failures + 1 < self.config.queue.max_attempts:
            task["f"] = failures + 1
            pause = max(retry_delay(failures + 1, random.random()), result.retry_after or 0.0)
            return self._again(task, pause), None
        else:
            task["f"] = failures + int(result.retryable)
            state = FAILED
        record = self._record(task, state, result)
        line = ManifestLine(record, url, state, result, result.error)
        return (fingerprint(url), record, "stored" if state == STORED else "failed", "", ""), line

    def _again(self, task: dict[str, Any], pause: float) -> tuple[Any, ...]:
        text = json.dumps(task, separators=(",", ":"))
        return (fingerprint(task["u"]), "", "", text, now_ms() + int(pause * 1000))

    def _record(self, task: dict[str, Any], state: str, result: Result) -> str:
        leases = int(task.get("l", 0))
        final = Task(
            0,
            task["u"],
            task.get("g", ""),
            task.get("k", ""),
            state=state,
            attempts=leases,
            failures=int(task.get("f", 0)),
            result=result,
        )
        return record_line(final_record(final).to_wire())

    def _write(self, finals: list[ManifestLine]) -> None:
        """Final records this harvester made, into its manifest and log."""
        if not finals:
            return
        with self.log.batch(), self.manifest.batch():
            for final in finals:
                self.manifest.write_line(final.line)
                result = final.result
                stored = final.state == STORED
                self.stats.count_image(stored, result.bytes if result else None)
                if stored and result is not None:
                    self.log.event(
                        "stored",
                        url=final.url,
                        bytes=result.bytes,
                        node=result.node or None,
                        path=result.path,
                        elapsed=result.elapsed,
                    )
                else:
                    self.log.event("failed", url=final.url, error=final.error)


@dataclass(frozen=True)
class ManifestLine:
    line: str
    url: str
    state: str
    result: Result | None
    error: str | None
