"""The harvester node: crawl pages, queue image tasks, serve them, record the results.

One main loop owns all state. Page fetching and parsing run in a small thread pool so
that the loop (and the manager's server threads answering downloaders) never wait on
a slow page. The loop ends when no page is left to fetch and every task is final;
then leases answer ``done`` and the harvester waits (``linger_seconds`` at most) for
the connected downloaders to hear it before it exits.

Everything the crawl knows lives in SQLite under ``--state`` (``broker/state.py``): stopped
by a signal or killed, the harvester started again with the same state resumes where
it was. The first SIGINT/SIGTERM stops it cleanly (exit 0, resumable); a second one
exits at once.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, Any

from crawler import wire
from crawler.broker.broker import Broker
from crawler.broker.politeness import Politeness
from crawler.broker.state import DATABASE_NAME, CrawlState, lock_state, unwritable_is_a_state_error
from crawler.config import Config, per_core
from crawler.errors import ConfigError, OtherCrawl
from crawler.harvest.parsing import PageParser
from crawler.harvest.recorder import Recorder
from crawler.harvest.recrawl import (
    GONE,
    NOT_MODIFIED,
    compare,
    page_outcome,
    parse_refs,
    refs_json,
    write_report,
)
from crawler.harvest.render_tally import RenderTally
from crawler.harvest.scope import Scope
from crawler.metrics import harvest_metrics
from crawler.metrics.base import (
    PAGE_FAILED,
    PAGE_FETCHED,
    PAGE_RETRIED,
    PAGE_SKIPPED,
    CrawlFigures,
    HarvestMetrics,
    NoMetrics,
)
from crawler.output.manifest import MANIFEST_NAME, Manifest
from crawler.output.progress import ProgressLog
from crawler.output.references import References, reference_rows
from crawler.records import OPT_OUT, AddressPolicyRecord
from crawler.render.base import Renderer
from crawler.render.chromium import ChromiumRenderer, find_chromium
from crawler.render.stage import RenderStage
from crawler.stats import CrawlStats
from crawler.urls import host_of, normalize, referer_for
from crawler.web.extract import ImageRef
from crawler.web.pages import (
    PageResult,
    StylesheetCache,
    check_robots,
    close_sessions,
    fetch_page,
    fetch_resource,
    fetch_robots,
    fetch_sitemap,
    fetch_tdmrep,
    find_sitemaps,
)
from crawler.web.retries import next_try_in, tries_allowed
from crawler.web.robots import ALLOWED, DISALLOWED, UNREACHABLE, RobotsCache, robots_url
from crawler.web.safehttp import session_options
from crawler.web.tdmrep import TdmRepCache

LOOP_TICK = 0.1

# Exit codes of ``crawler harvest`` (the README lists them). 2 is a usage or config
# error and 4 a state folder of another crawl (``errors.OtherCrawl``); a signal gives
# 128 + its number: 130 for Ctrl-C, 143 for SIGTERM, as shells expect.
EXIT_FINISHED = 0  # finished, at least one page fetched
EXIT_NOTHING_FETCHED = 3  # finished without fetching a single page: every seed failed
EXIT_STORAGE = 5  # stopped: the harvester could not write its state, manifest or log
EXIT_AT_ONCE = 130


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


class HarvesterStorageFailed(Exception):
    """The harvester could not write its state, manifest or log (a full disk, say)."""


def storage_failure(exc: BaseException) -> str | None:
    """Why ``exc`` is a failure to write the harvester's own files, or None if it is not.

    SQLite says "database or disk is full", "disk I/O error" or "attempt to write a
    readonly database"; file writes raise ``OSError``.
    """
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if any(word in text for word in ("full", "disk I/O", "readonly", "unable to open")):
            return text
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or str(exc)
    return None


MAX_DEFERRED_PAGES = 1000


# Fetches and extracts one page: (url, depth, the page that linked it or '') -> what
# it holds.
PageFetch = Callable[[str, int, str], PageResult]
# A page taken from the frontier: (url, depth, the page that linked it or '').
Taken = tuple[str, int, str]
# Reads one sitemap job: (url, find: True for a site's origin, whose sitemaps are to be
# found) -> a result whose ``sitemap`` lists what it found.
SitemapFetch = Callable[[str, bool], PageResult]


def _quietly(close: Callable[[], Any]) -> None:
    """Close something at the end, on a full disk too: the last lines may not fit, and
    the resume redoes them."""
    with contextlib.suppress(OSError, sqlite3.Error):
        close()


def host_fields(hosts: list[dict[str, Any]]) -> dict[str, str | None]:
    """Per-host state in two logfmt fields: ``busy`` (in flight/limit) and ``throttled``
    (paused seconds left, current delay, 429/503 count, down)."""
    busy = ",".join(f"{h['host']}={h['in_flight']}/{h['limit']}" for h in hosts if h["in_flight"])
    throttled = ",".join(
        f"{h['host']}=paused:{h['paused']}s;delay:{h['delay']}s;429/503:{h['throttled']}"
        + (";down" if h["down"] else "")
        for h in hosts
        if h["paused"] or h["throttled"] or h["down"]
    )
    return {"busy": busy or None, "throttled": throttled or None}


def _after(start_in: float | None, fetch: Callable[..., PageResult], *args: Any) -> PageResult:
    """``fetch(*args)``, in a page thread, once the host's delay (``start_in``) is over."""
    if start_in:
        time.sleep(start_in)
    return fetch(*args)


def _page_outcome(page: PageResult) -> tuple[int | None, str | None]:
    """A page result as the politeness feedback reads results: (status, error)."""
    return (None, "connection_error") if page.unreachable else (page.status, page.error)


class Harvester:
    """The crawl: pages -> image tasks -> a broker served to nodes -> manifest and log."""

    def __init__(
        self,
        config: Config,
        seeds: list[str],
        authkey: bytes,
        pages: PageFetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        sitemaps: SitemapFetch | None = None,
        recrawl: bool = False,
        renderer: Renderer | None = None,
    ) -> None:
        """``pages`` (fetch and extract one page: url, depth, referer -> ``PageResult``) and
        ``clock`` (the time the crawl's schedule reads: retries, leases, delays) replace
        the web and the clock, for tests of the crawl loop; ``sitemaps`` reads sitemaps
        (a harvester given ``pages`` reads them only from ``sitemaps``: a fake web has
        no real sitemaps). ``recrawl``: a finished crawl starts again (``--recrawl``).
        ``renderer`` renders pages for ``--render`` auto or always (default: a local
        Chromium, started on the first page to render)."""
        self.config = config
        self.clock = clock
        self.recrawl = recrawl
        self.recrawling = False  # this run belongs to a recrawl (started or resumed)
        self._validators: dict[str, tuple[str, str]] = {}  # for the page threads
        self._pages = pages or self._fetch_and_extract
        self._sitemaps = sitemaps or (self._read_sitemap if pages is None else None)
        self.sitemap_jobs: collections.deque[tuple[str, bool]] = collections.deque()
        self.sitemaps_seen: set[str] = set()
        self.sitemap_pages = 0  # pages new to the frontier from sitemaps, this run
        self._finding: set[str] = set()  # sites whose sitemaps are being looked for
        self._guessed: set[str] = set()  # sitemaps tried by their usual name only
        self.crawl = config.crawl
        self.seeds = check_seeds(seeds)
        self.authkey = authkey
        self.scope = Scope(self.crawl, self.seeds)
        self.deferred: list[Taken] = []  # taken pages whose host had no slot
        self.delay_known: set[str] = set()
        self._hosts_logged = False  # hosts whose Crawl-delay the broker has
        self.images_left_out = 0  # new image URLs beyond max_images, this run
        self.in_flight: dict[Future[PageResult], str] = {}
        self.stats = CrawlStats()
        self.metrics: HarvestMetrics = NoMetrics()
        self._frontier_size = 0  # pages queued or in flight, as of the last totals
        self._finished = False
        self._stored_at_last_totals = 0
        self.stopping = False
        self.stop_signal: int | None = None
        self.robots = (
            RobotsCache(self.crawl.user_agent, lambda url: fetch_robots(url, self.crawl))
            if self.crawl.obey_robots
            else None
        )
        self.sheets = StylesheetCache(self.crawl, self.robots)
        self.render_mode = config.render.render
        self._renderer = renderer
        if self.render_mode != "never" and renderer is None:
            find_chromium(config.render.chromium)  # none: said at start, not page by page
        self.render = RenderStage("never", None)
        self.render_tally = RenderTally(self.render_mode)
        self.dataset = config.dataset
        # A dataset crawl leaves opted-out images undownloaded (unless told otherwise).
        self.skip_opted_out = self.dataset.for_dataset and not self.dataset.ignore_opt_out
        self.tdmrep = (
            TdmRepCache(lambda url: fetch_tdmrep(url, self.crawl))
            if self.dataset.for_dataset and pages is None
            else None
        )
        # A CA bundle or a cookies file not there: said at start, not page by page.
        session_options(self.crawl, os.environ)

    def run(self) -> int:
        """Crawl until every page and image is done or a signal stops it; returns the
        exit code (see ``EXIT_*``). Whatever happens, everything it opened is closed
        (in the reverse order), and a start that failed leaves no new crawl behind."""
        with contextlib.ExitStack() as opened:
            opened.callback(_quietly, self._open_state().close)
            opened.callback(_quietly, self.state.close)
            if self.state.finished and self.recrawl:
                queued = self.state.start_recrawl()
                print(
                    f"recrawl {self.state.recrawls}: {queued} pages queued again "
                    "(conditional GETs; images known already are not fetched again)",
                    flush=True,
                )
            elif self.state.finished:
                print(
                    f"crawl already finished (state in {self.config.output.state_dir}): "
                    + self.summary(None),
                    flush=True,
                )
                return self._finished_code()
            self.recrawling = self.state.recrawls > 0
            queue = self.config.queue
            self.broker = Broker(
                queue.lease_seconds,
                queue.max_attempts,
                queue.node_timeout,
                db=self.state.tasks_db,
                politeness=Politeness.from_config(self.config.politeness),
                user_agent=self.crawl.user_agent,
                address_policy=AddressPolicyRecord(
                    self.crawl.allow_private, tuple(self.crawl.allow_networks)
                ),
                max_lease_wait=queue.max_lease_wait,
                referer=self.crawl.referer,
                clock=self.clock,
                skip_opted_out=self.skip_opted_out,
            )
            try:
                self.metrics = harvest_metrics(self.config.metrics, self._figures)
                opened.callback(self.metrics.close)
                server = wire.serve(self.broker, queue.listen, self.authkey, queue, self.config.tls)
                self._open_outputs(opened)
            except BaseException:
                if self.state.is_new:  # a start that failed leaves no crawl behind
                    self.state.close()
                    self.state.remove()
                raise
            opened.callback(server.stop)
            opened.enter_context(self._stop_on_signals())
            try:
                return self._serve_and_crawl(server)
            except HarvesterStorageFailed as exc:
                print(
                    f"harvester: error: cannot write the crawl's files in "
                    f"{self.config.output.out_dir} ({exc}); stopped: make room and run the "
                    "same command again to resume",
                    file=sys.stderr,
                    flush=True,
                )
                return EXIT_STORAGE

    def _figures(self) -> CrawlFigures:
        """The crawl's state for the metrics (their scrapes call it, from their thread)."""
        return CrawlFigures(self.broker.figures(), self._frontier_size, self._finished)

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the crawl (``_stop``) while inside."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _serve_and_crawl(self, server: wire.Server) -> int:
        started = time.monotonic()
        try:
            server.start()
            self._start_log(server)
            self.parser = PageParser(
                per_core(self.crawl.parse_processes),
                describe=self.dataset.for_dataset,
                largest=self.dataset.variants == "largest",
            )
            self.render = self._render_stage()
            self._find_sitemaps()
            with ThreadPoolExecutor(self.crawl.page_workers, "page") as pages:
                try:
                    self._crawl(pages)
                finally:
                    if self.stopping or self.broker.storage_fault:
                        pages.shutdown(wait=False, cancel_futures=True)
                    if self.render.renderer is not None:
                        self.render.renderer.close()
                    self.parser.close()
            close_sessions()
            elapsed = time.monotonic() - started
            if self.stopping:
                self._record_updates()
                self.log.event("crawl_stopped", signal=self.stop_signal, **self.stats.fields())
                print(
                    f"harvester: stopped by {signal.Signals(self.stop_signal or 2).name}; "
                    "run the same command again to resume",
                    file=sys.stderr,
                    flush=True,
                )
                return 128 + (self.stop_signal or signal.SIGINT)
            self._linger()
            self.state.mark_finished()
            self._log_totals(elapsed)
            self._finished = True
            self.log.event(
                "crawl_finished",
                seconds=round(elapsed, 2),
                images_left_out=self.images_left_out or None,
                **self.stats.fields(),
            )
            print(self.summary(elapsed), flush=True)
            if self.recrawling:
                self._report_recrawl()
            self.metrics.linger(self.config.metrics.metrics_linger, lambda: self.stopping)
            return self._finished_code()
        except (OSError, sqlite3.Error) as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            raise HarvesterStorageFailed(reason) from exc

    def _report_recrawl(self) -> None:
        """``OUT/recrawl.json`` and its line: the recrawl against the crawl before."""
        report = compare(
            self.state.recrawls, self.state.frontier.all_refs(), self.state.new_image_urls()
        )
        path = write_report(self.config.output.out_dir, report)
        self.log.event("recrawl_finished", report=str(path), **report.pages)
        print(f"{report.line()} ({path})", flush=True)

    def _finished_code(self) -> int:
        return EXIT_FINISHED if self.state.frontier.count("done") else EXIT_NOTHING_FETCHED

    def _stop(self, signum: int, _frame: Any) -> None:
        """First signal: stop taking work and leave resumable state. Second: exit now."""
        if self.stopping:
            os._exit(EXIT_AT_ONCE)
        self.stopping = True
        self.stop_signal = signum
        print("harvester: stopping (again to quit at once)", file=sys.stderr, flush=True)

    def _open_state(self) -> IO[str]:
        """Lock the state folder and open (or resume) the crawl database."""
        out = self.config.output.out_dir
        state_dir = self.config.output.state_dir
        with unwritable_is_a_state_error(out):
            manifest_path = out / MANIFEST_NAME
            has_state = (state_dir / DATABASE_NAME).exists()
            if not has_state and manifest_path.exists() and manifest_path.stat().st_size > 0:
                raise OtherCrawl(
                    f"{manifest_path} holds an earlier crawl whose state is not in "
                    f"{state_dir}; choose another --out or move it away"
                )
            lock = lock_state(state_dir)
            self.state = CrawlState(state_dir, self.seeds)
        return lock

    def _open_outputs(self, opened: contextlib.ExitStack) -> None:
        with unwritable_is_a_state_error(self.config.output.out_dir):
            self.manifest = Manifest(self.config.output.out_dir)
            opened.callback(_quietly, self.manifest.close)
            self.log = ProgressLog(self.config.output.log_path)
            opened.callback(_quietly, self.log.close)
            self.references = References(self.config.output.out_dir)
            opened.callback(_quietly, self.references.close)

    def _start_log(self, server: wire.Server) -> None:
        frontier = self.state.frontier
        self.pages_begun = frontier.count("done", "failed", "skipped")
        counts = self.broker.counts()
        self.stats = CrawlStats(
            pages=frontier.count("done"),
            page_errors=frontier.count("failed"),
            stored=counts["stored"],
            failed=counts["failed"],
            bytes=self.state.stored_bytes(),
        )
        self._stored_at_last_totals = self.stats.stored
        self._frontier_size = frontier.count("queued")
        self.recorder = Recorder(self.broker, self.manifest, self.log, self.stats, self.metrics)
        if self.state.resumed:
            self.log.event(
                "crawl_resumed",
                seeds=" ".join(self.seeds),
                listen=self.config.queue.listen,
                repaired_manifest=self.manifest.repaired or None,
                **self.stats.fields(),
            )
            self.recorder.record_missing_lines()
        else:
            self.log.event(
                "crawl_started",
                seeds=" ".join(self.seeds),
                listen=self.config.queue.listen,
                robots="obeyed" if self.robots else "ignored",
                for_dataset=self.dataset.for_dataset or None,
                variants=self.dataset.variants if self.dataset.variants != "all" else None,
            )
        if self.dataset.ignore_opt_out:
            self.log.event("opt_out_ignored")
            print(
                "harvester: --ignore-opt-out: images that opt out of AI use are downloaded "
                "all the same",
                file=sys.stderr,
                flush=True,
            )
        metrics = f"; metrics on http://{self.metrics.where}/metrics" if self.metrics.where else ""
        print(
            f"harvester: {'resumed; ' if self.state.resumed else ''}serving tasks on "
            f"{server.where}; "
            f"progress log {self.config.output.log_path}{metrics}",
            file=sys.stderr,
            flush=True,
        )
        if wire.clear_on_network(self.config.queue.listen, self.config.tls):
            print(
                f"harvester: warning: serving {server.where} beyond this machine without TLS: "
                "URLs and results cross the network in clear (--tls-cert, --tls-key, "
                "--tls-ca; `crawler keygen --tls DIR`)",
                file=sys.stderr,
                flush=True,
            )

    # -- the main loop -------------------------------------------------------------

    def _crawl(self, pages: ThreadPoolExecutor) -> None:
        last_totals = last_maintained = self.clock()
        while not self.stopping:
            self._start_pages(pages)
            if self.in_flight:
                finished, _ = wait(self.in_flight, timeout=LOOP_TICK, return_when=FIRST_COMPLETED)
                done = [future.result() for future in finished]
                for future in finished:
                    del self.in_flight[future]
                self.broker.release_page_slots(
                    [(host_of(page.url), *_page_outcome(page)) for page in done]
                )
                for page in done:
                    self._handle_page(page)
            else:
                # Woken by the next result batch: the manifest follows the nodes at once,
                # and the crawl's end is seen when its last result arrives.
                self.broker.wait_for_updates(LOOP_TICK)
            if self.broker.storage_fault is not None:  # a node's call could not be stored
                raise self.broker.storage_fault
            now = self.clock()
            if now - last_maintained >= LOOP_TICK:
                self.broker.maintain()
                last_maintained = now
            self._record_updates()
            if now - last_totals >= self.config.output.totals_interval:
                self._log_totals(now - last_totals)
                last_totals = now
            if not self.in_flight and self._pages_exhausted() and self.broker.all_final():
                self.broker.close()
                return

    def _page_budget(self) -> float:
        """Pages that may still be started (``max_pages`` counts every page begun)."""
        if not self.crawl.max_pages:
            return float("inf")
        return self.crawl.max_pages - self.pages_begun

    def _image_budget(self) -> float:
        """New image URLs that may still be queued (``max_images`` counts every URL)."""
        if not self.crawl.max_images:
            return float("inf")
        return max(0, self.crawl.max_images - self.broker.counts()["tasks"])

    def _pages_exhausted(self) -> bool:
        """No page is left to start (pages waiting for another try count as left), and
        no image waits for its host's robots.txt: held images are decided before the
        crawl ends, whatever the budgets."""
        if not self.state.held.empty() or self.sitemap_jobs:
            return False
        if self._page_budget() <= 0 or self._image_budget() <= 0:
            return True
        return not self.deferred and not self.state.frontier.count("queued")

    def _start_pages(self, pages: ThreadPoolExecutor) -> None:
        """Start pages while workers are free, each only when its host has a slot
        (pages count against the same per-host limits as the downloaders' requests),
        and the robots.txt checks of held images that are due."""
        now = self.clock()
        room = self._start_robots_checks(
            pages, self.crawl.page_workers * 2 - len(self.in_flight), now
        )
        room = self._start_sitemap_jobs(pages, room)
        if room <= 0 or self._image_budget() <= 0:
            return
        want = int(min(room, self._page_budget() - len(self.deferred)))
        if want > 0 and len(self.deferred) < MAX_DEFERRED_PAGES:
            self.deferred += self._not_waiting_for_robots(self.state.frontier.take(want, now), now)
        waiting = []
        slots = self.broker.take_page_slots([host_of(url) for url, *_ in self.deferred], room)
        for taken, (granted, start_in) in zip(self.deferred, slots, strict=True):
            if not granted:
                waiting.append(taken)
                continue
            self.pages_begun += 1
            url = taken[0]
            if self.recrawling:
                self._validators[url] = self.state.frontier.validators(url)
            future = pages.submit(_after, start_in, self._pages, *taken)
            self.in_flight[future] = url
        self.deferred = waiting
        self.broker.set_page_hosts({host_of(url) for url, *_ in waiting})

    def _not_waiting_for_robots(self, taken: list[Taken], now: float) -> list[Taken]:
        """The pages of ``taken`` that may start; a page whose host's robots.txt could not
        be read goes back to the frontier until that robots.txt's next try (RFC 9309:
        complete disallow meanwhile), which costs it no try of its own."""
        if self.robots is None:
            return taken
        ready = []
        for page in taken:
            failure = self.robots.failure(page[0])
            if failure is not None and failure.retry_at > now:
                self.state.frontier.requeue(page[0], failure.retry_at)
            else:
                ready.append(page)
        return ready

    def _start_robots_checks(self, pages: ThreadPoolExecutor, room: int, now: float) -> int:
        """Check again, in the page threads, the robots.txt of held images that are due
        (a robots.txt read meanwhile decides them at once, and so does a run that
        ignores robots.txt); returns the room left."""
        checking = set(self.in_flight.values())
        for robots in self.state.held.due(now):
            if room <= 0:
                break
            if robots in checking:
                continue
            if self.robots is None:
                self._release_held(robots, None)
                continue
            failure = self.robots.failure(robots)
            if self.robots.has_rules(robots):
                self._decide_held(robots, now)
            elif failure is not None and failure.retry_at > now:
                self.state.held.postpone(robots, failure.retry_at)
            else:
                ((granted, start_in),) = self.broker.take_page_slots([host_of(robots)], 1)
                if granted:
                    future = pages.submit(_after, start_in, self._check_robots, robots)
                    self.in_flight[future] = robots
                    room -= 1
        return room

    # -- sitemaps ------------------------------------------------------------------

    def _find_sitemaps(self) -> None:
        """Queue, for each seed's site, the job that finds its sitemaps."""
        if not (self.crawl.sitemaps and self._sitemaps and self.crawl.max_sitemaps):
            return
        for url in self.seeds:
            origin = f"{url.split('/', 3)[0]}//{host_of(url)}/"
            if origin not in self._finding:
                self._finding.add(origin)
                self.sitemap_jobs.append((origin, True))

    def _start_sitemap_jobs(self, pages: ThreadPoolExecutor, room: int) -> int:
        """Start waiting sitemap jobs in the page threads, each in a page slot of its
        host; returns the room left."""
        for _ in range(len(self.sitemap_jobs)):
            if room <= 0:
                break
            url, find = self.sitemap_jobs.popleft()
            ((granted, start_in),) = self.broker.take_page_slots([host_of(url)], 1)
            if not granted:
                self.sitemap_jobs.append((url, find))  # its host is busy: later
                continue
            assert self._sitemaps is not None  # jobs are queued only with a reader
            future = pages.submit(_after, start_in, self._sitemaps, url, find)
            self.in_flight[future] = url
            room -= 1
        return room

    def _read_sitemap(self, url: str, find: bool) -> PageResult:
        if find:
            return find_sitemaps(url, self.crawl, self.robots)
        return fetch_sitemap(url, self.crawl, self.robots)

    def _handle_sitemap(self, page: PageResult) -> None:
        """What a sitemap lists: more sitemaps on the crawl's hosts (``max_sitemaps``
        read at most), pages into the frontier at depth 1 (within scope), images as
        tasks of kind ``sitemap``; each file said in the log (a missing
        ``/sitemap.xml`` that nothing listed is not news)."""
        content = page.sitemap
        if content is None:
            if not (page.url in self._guessed and page.error == "http_404"):
                self.log.event("sitemap_failed", url=page.url, error=page.error)
            return
        for url in content.sitemaps:
            new = url not in self.sitemaps_seen and self.scope.host_allowed(url)
            if new and len(self.sitemaps_seen) < self.crawl.max_sitemaps:
                self.sitemaps_seen.add(url)
                self.sitemap_jobs.append((url, False))
                if page.guessed:
                    self._guessed.add(url)
        if page.url in self._finding:  # the job that found where the sitemaps are
            return
        pages = [url for url in content.pages if self.scope.page_allowed(url)]
        added = 0
        if pages and self.crawl.max_depth >= 1:
            added = self.state.frontier.add_many([(url, 1) for url in pages])
        self.sitemap_pages += added
        allowed = self.scope.image_allowed
        images = [(url, on, "sitemap") for url, on in content.images if allowed(url)]
        self._take_images(page, images)
        self.log.event(
            "sitemap_read",
            url=page.url,
            pages=len(content.pages),
            new_pages=added,
            images=len(images),
            sitemaps=len(content.sitemaps) or None,
            cut_short=content.cut_short or None,
        )

    def _take_images(self, page: PageResult, images: list[tuple[str, str, str]]) -> None:
        """Queue what a page (or a sitemap) found, ``(url, page, kind)`` items already
        in scope, its hosts' crawl delays learnt first; record the images robots.txt
        refuses, and hold those whose host's robots.txt cannot be read yet."""
        self._learn_crawl_delays([url for url, _, _ in images])
        self._queue_images(images, page.url)
        refused = [(ref.url, page.url, ref.kind) for ref in page.refused_images]
        self.broker.add_refused(refused, DISALLOWED)
        allowed = self.scope.image_allowed
        self._hold_images(
            [(ref.url, page.url, ref.kind) for ref in page.held_images if allowed(ref.url)]
        )

    def _render_stage(self) -> RenderStage:
        """The page path's render stage for ``--render`` (none with ``never``)."""
        if self.render_mode == "never":
            return RenderStage("never", None)
        renderer = self._renderer or ChromiumRenderer(
            self.config.render,
            lambda url, referer: fetch_resource(url, self.crawl, referer, self.robots),
            frame_allowed=self.scope.page_allowed,
        )
        return RenderStage(self.render_mode, renderer, self.crawl.user_agent)

    def _fetch_and_extract(self, url: str, depth: int, linked_from: str) -> PageResult:
        referer = referer_for(linked_from, url, self.crawl.referer)
        page = fetch_page(
            url,
            depth,
            self.crawl,
            self.robots,
            self.sheets,
            self.parser.parse,
            referer,
            self.parser.match,
            self._validators.pop(url, ("", "")),
            self.render,
        )
        if self.tdmrep is not None and not (page.error or page.opt_out or page.is_image):
            page.opt_out = self.tdmrep.opt_out(page.final_url or url)  # (in the page thread)
        return page

    def _check_robots(self, robots: str) -> PageResult:
        assert self.robots is not None  # checks start only when robots.txt is obeyed
        return check_robots(robots, self.robots)

    def _handle_page(self, page: PageResult) -> None:
        if page.sitemap_job:
            self._handle_sitemap(page)
            return
        if page.robots_only:
            self._decide_held(page.url, self.clock())
            return
        frontier = self.state.frontier
        if page.final_url and page.final_url != page.url:
            if page.depth == 0:  # a seed that redirects (http -> https, say) moves the scope
                self.scope.add_host(page.final_url)
            frontier.mark_seen(page.final_url)
        if page.is_image:
            self.metrics.page(PAGE_SKIPPED, "image", page.fetch_seconds)
            frontier.finish(page.url, "skipped")
            if self.scope.image_allowed(page.url):
                self._queue_images([(page.url, page.url, "link")], page.url)
            return
        if page.retryable and self._try_page_again(page):
            return
        if page.error in ("not_html", DISALLOWED):
            self.metrics.page(PAGE_SKIPPED, page.error, page.fetch_seconds)
            frontier.finish(page.url, "skipped")
            if page.depth == 0 and page.error == DISALLOWED:
                print(
                    f"harvester: seed {page.url} is disallowed by robots.txt "
                    "(--ignore-robots to crawl it anyway)",
                    file=sys.stderr,
                )
            reason = "robots.txt" if page.error == DISALLOWED else page.content_type
            self.log.event("page_skipped", url=page.url, reason=reason)
            return
        if page.error:
            frontier.finish(page.url, "failed")
            if self.recrawling and frontier.refs(page.url)[1]:
                frontier.remember(page.url, ("", ""), "", GONE)
            if page.depth == 0:  # a seed: the user should hear about it at once
                print(f"harvester: seed {page.url} failed: {page.error}", file=sys.stderr)
            self.stats.count_page(ok=False)
            self.metrics.page(PAGE_FAILED, page.error, page.fetch_seconds)
            self.log.event("page_failed", url=page.url, status=page.status, error=page.error)
            return
        self.stats.count_page(ok=True)
        self.metrics.page(PAGE_FETCHED, None, page.fetch_seconds)
        # (read only in a recrawl: the first crawl of a page has nothing kept yet)
        refs, refs_before = frontier.refs(page.url) if self.recrawling else ("", None)
        if page.not_modified:  # what it referenced last time holds
            kept_images, kept_links = parse_refs(refs)
            page.images = [ImageRef(url, kind) for url, kind in kept_images]
            page.links, page.nofollow_links = kept_links, []
        images = [ref for ref in page.images if self.scope.image_allowed(ref.url)]
        links = page.links + ([] if self.crawl.obey_nofollow else page.nofollow_links)
        if page.not_modified:
            outcome = NOT_MODIFIED
            refs_now = refs
            served = (page.etag, page.last_modified)  # a 304 may bring new ones
            validators = served if any(served) else frontier.validators(page.url)
        else:
            refs_now = refs_json(((ref.url, ref.kind) for ref in images), links)
            outcome = page_outcome(refs_now, refs_before) if self.recrawling else ""
            validators = (page.etag, page.last_modified)
        self.log.event(
            "page_fetched",
            url=page.url,
            status=page.status,
            depth=page.depth,
            images=len(images),
            links=len(links),
            off_host_images=len(page.images) - len(images) or None,
            nofollow_links=(len(page.nofollow_links) if self.crawl.obey_nofollow else 0) or None,
            truncated=page.truncated or None,
            **self.render_tally.page(page),
        )
        if page.rendered:
            self.metrics.render(page.render_error, page.render_seconds or 0.0, page.rendered_images)
        elif page.script_hints:
            self.metrics.script_page_unrendered()
        if page.render_host_stopped:
            self.log.event("render_stopped", host=host_of(page.url), reason="nothing new")
        self._learn_crawl_delays([page.url])
        if page.opt_out:
            self.log.event("page_opt_out", url=page.url, signal=page.opt_out)
        if page.opt_out or self.dataset.for_dataset:
            shown = images + [
                ref
                for ref in page.refused_images + page.held_images
                if self.scope.image_allowed(ref.url)
            ]
            self.references.write(reference_rows(page.url, shown, page.description, page.opt_out))
        if page.opt_out and self.skip_opted_out:
            # Recorded, not fetched: another page showing one of them changes nothing.
            held = [ref for ref in page.held_images if self.scope.image_allowed(ref.url)]
            refused = [(ref.url, page.url, ref.kind) for ref in images + held]
            self.broker.add_refused(refused, f"{OPT_OUT}: {page.opt_out}")
            images, page.held_images = [], []
        # Tasks first, then the page is done: a crash in between re-fetches the page,
        # and the image URLs it queues again are de-duplicated.
        self._take_images(page, [(ref.url, page.url, ref.kind) for ref in images])
        if page.depth < self.crawl.max_depth:
            frontier.add_many(
                [(link, page.depth + 1) for link in links if self.scope.page_allowed(link)],
                referer=page.final_url or page.url,
            )
        frontier.remember(page.url, validators, refs_now, outcome)
        frontier.finish(page.url, "done")

    def _try_page_again(self, page: PageResult) -> bool:
        """Put a page that failed for a passing reason back in the frontier, due after
        a pause (``retries.next_try_in``: 1, 2, 4 ... 120 s; ``host_down_timeout`` long
        for a host that gives no answer or a robots.txt that cannot be read, else
        ``max_attempts`` tries). False when its tries are used up: it fails for good.
        The tries are counted in the state, so restarts do not renew them."""
        failures = self.state.frontier.record_failure(page.url)
        long_wait = page.unreachable or (page.error or "").startswith(UNREACHABLE)
        settings = (self.config.queue.max_attempts, self.config.politeness.host_down_timeout)
        pause = next_try_in(failures, long_wait, *settings)
        if pause is None:
            return False
        self.state.frontier.requeue(page.url, self.clock() + pause)
        self.pages_begun -= 1  # begun again when it is taken again
        self.metrics.page(PAGE_RETRIED, page.error, page.fetch_seconds)
        self.log.event(
            "page_retry", url=page.url, error=page.error, failures=failures, retry_in=pause
        )
        if page.depth == 0 and failures == 1:
            print(
                f"harvester: seed {page.url} failed: {page.error}; trying it again "
                f"({tries_allowed(long_wait, *settings)} tries at most)",
                file=sys.stderr,
            )
        return True

    def _hold_images(self, items: list[tuple[str, str, str]]) -> None:
        """Hold images whose host's robots.txt could not be read, in the state, until
        it is checked again (``_decide_held``)."""
        by_robots: dict[str, list[tuple[str, str, str]]] = {}
        for item in items:
            by_robots.setdefault(robots_url(item[0]), []).append(item)
        for robots, held in by_robots.items():
            failure = self.robots.failure(robots) if self.robots else None
            due = failure.retry_at if failure is not None else 0.0
            if self.state.held.hold(robots, held, due):
                reason = failure.reason if failure is not None else None
                self.log.event("images_held", robots=robots, images=len(held), error=reason)

    def _decide_held(self, robots: str, now: float) -> None:
        """After a check of ``robots``: its held images are queued or refused once it has
        been read; after a failed read they wait for its next try, and once
        ``retries.tries_allowed`` reads have failed (as for a page of a host that gives no
        answer), or at once for a failure trying again cannot help (a TLS failure), they
        are final failures ``robots_unreachable: REASON``, each with its manifest line."""
        assert self.robots is not None
        failure = self.robots.failure(robots)
        if failure is None:
            self._release_held(robots, None)
            return
        checks = self.state.held.record_failed_check(robots, failure.retry_at)
        settings = (self.config.queue.max_attempts, self.config.politeness.host_down_timeout)
        if failure.retryable and checks < tries_allowed(True, *settings):
            retry_in = round(failure.retry_at - now, 1)
            self.log.event(
                "robots_retry",
                robots=robots,
                error=failure.reason,
                checks=checks,
                retry_in=retry_in,
            )
            return
        self._release_held(robots, f"{UNREACHABLE}: {failure.reason}")

    def _release_held(self, robots: str, error: str | None) -> None:
        """Queue or refuse the images held for a robots.txt now read (``error`` None), or
        record them as failed with ``error``; each batch is let go only once recorded."""
        released = 0
        while batch := self.state.held.batch(robots):
            if error is None:
                verdicts = [
                    self.robots.cached_verdict(url) if self.robots else ALLOWED
                    for url, _, _ in batch
                ]
                allowed = [item for item, v in zip(batch, verdicts, strict=True) if v == ALLOWED]
                refused = [item for item, v in zip(batch, verdicts, strict=True) if v != ALLOWED]
                self._learn_crawl_delays([url for url, _, _ in allowed[:1]])
                self._queue_images(allowed)
                self.broker.add_refused(refused, DISALLOWED)
            else:
                self.broker.add_refused(batch, error)
            self.state.held.release(robots, [url for url, _, _ in batch])
            released += len(batch)
        self.log.event("images_released", robots=robots, images=released, error=error)

    def _learn_crawl_delays(self, urls: list[str]) -> None:
        """Pass each new host's robots.txt Crawl-delay to the broker before its tasks
        are queued (the rules were fetched already, to check the URLs; a host whose
        robots.txt could not be read yet is learnt once it has been)."""
        if self.robots is None:
            return
        for url in urls:
            host = host_of(url)
            if host not in self.delay_known and self.robots.has_rules(url):
                self.delay_known.add(host)
                delay = self.robots.crawl_delay(url)
                if delay:
                    self.broker.set_crawl_delay(host, delay)
                    self.log.event("crawl_delay", host=host, seconds=delay)

    def _queue_images(self, items: list[tuple[str, str, str]], page: str | None = None) -> None:
        budget = self._image_budget()
        added, left_out = self.broker.add_tasks(items, budget)
        self.metrics.images_queued(len(added))
        with self.log.batch():
            for task in added:
                self.log.event("queued", url=task.url, page=task.page, kind=task.kind)
        if left_out:
            if not self.images_left_out:
                self.log.event("image_limit_reached", max_images=self.crawl.max_images)
            self.images_left_out += left_out
            self.log.event("images_left_out", page=page, count=left_out)

    # -- results -------------------------------------------------------------------

    def _record_updates(self) -> None:
        """What the broker finished, into the manifest and the log (``Recorder``)."""
        self.recorder.record_updates()

    def _log_totals(self, interval: float) -> None:
        counts = self.broker.counts()
        stats = self.stats
        rate = (stats.stored - self._stored_at_last_totals) / interval if interval else 0.0
        self._stored_at_last_totals = stats.stored
        frontier = self.state.frontier.count("queued") + len(self.in_flight)
        self._frontier_size = frontier
        self.log.event(
            "totals",
            **stats.fields(),
            frontier=frontier,
            queued=counts["tasks"],
            leased=counts["leased"],
            waiting=counts["waiting"],
            nodes=counts["nodes"],
            images_per_s=round(rate, 1),
        )
        self.broker.set_crawl_info(
            {
                "seeds": " ".join(self.seeds),
                "pages": stats.pages,
                "page_errors": stats.page_errors,
                "frontier": frontier,
                "bytes": stats.bytes,
                "images_per_s": round(rate, 1),
                "images_left_out": self.images_left_out,
                "stopping": self.stopping,
            }
        )
        hosts = self.broker.host_snapshot()
        if hosts or self._hosts_logged:  # an empty one says the last busy host is done
            self.log.event("hosts", **host_fields(hosts))
        self._hosts_logged = bool(hosts)

    def _linger(self) -> None:
        """Give connected downloaders up to ``linger_seconds`` to hear that work is done
        and say goodbye."""
        deadline = time.monotonic() + self.config.queue.linger_seconds
        while time.monotonic() < deadline and self.broker.counts()["nodes"]:
            time.sleep(LOOP_TICK)
            self.broker.maintain()
            self._record_updates()
        self._record_updates()

    def summary(self, elapsed: float | None) -> str:
        """One line of figures; ``elapsed`` None for a crawl that finished earlier."""
        frontier = self.state.frontier
        counts = dict(
            self.state.pages_db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state")
        )
        stored, failed = counts.get("stored", 0), counts.get("failed", 0)
        ended = (
            "crawl finished"
            if frontier.count("done")
            else "crawl ended without fetching a page (every seed failed)"
        )
        line = (
            f"{ended}: {frontier.count('done')} pages ({frontier.count('failed')} failed), "
            f"{sum(counts.values())} images found, {stored} stored, {failed} failed, "
            f"{self.state.stored_bytes() / 1e6:.1f} MB"
        )
        if self.sitemap_pages:
            line += f", {self.sitemap_pages} pages found in sitemaps"
        if self.images_left_out:
            line += f", {self.images_left_out} more image URLs left out (max_images)"
        line += self.render_tally.summary()
        if elapsed is None:
            return line
        rate = self.stats.stored / elapsed if elapsed > 0 else 0.0
        return f"{line}, {elapsed:.1f} s, {rate:.1f} images/s"
