"""The harvester's crawl loop in one process: pages from a fake web, the broker served
on the in-process wire, a node that stores whatever it leases, and a clock that moves
only when the node has nothing to do (so a retry due in minutes comes at once, and in
order).

What a real crawl adds (HTTP, the manager wire, downloader processes) is tested end to
end in tests/e2e; here the loop's own decisions are: every page once, every image
once in the manifest, pages retried after their pause, a stop that resumes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crawler import wire
from crawler.config import Config, CrawlConfig, OutputConfig, QueueConfig
from crawler.harvest.harvester import EXIT_FINISHED, Harvester
from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from crawler.records import STORED, Result
from crawler.web.extract import ImageRef
from crawler.web.pages import PageResult
from crawler.web.sitemaps import SitemapContent

SEED = "http://site.test/"
REAL_LIMIT = 20.0  # seconds a test may take at most
_names = itertools.count()


class ManualClock:
    def __init__(self) -> None:
        self.time = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.time += seconds


@dataclass
class FakeSite:
    """Pages of a site: each links to its children and shows two images of its own."""

    pages: dict[str, list[str]]
    failures: dict[str, int] = field(default_factory=dict)  # url -> times it fails first
    fetched: list[tuple[str, float]] = field(default_factory=list)
    on_fetch: Callable[[str], None] | None = None
    clock: ManualClock = field(default_factory=ManualClock)
    linked_from: dict[str, str] = field(default_factory=dict)  # page -> the page given

    def fetch(self, url: str, depth: int, linked_from: str) -> PageResult:
        self.fetched.append((url, self.clock()))
        self.linked_from[url] = linked_from
        if self.on_fetch is not None:
            self.on_fetch(url)
        if self.failures.get(url, 0) > 0:
            self.failures[url] -= 1
            return PageResult(url, depth, error="timeout: read timed out", retryable=True)
        images = [ImageRef(f"{url}img{n}.png", "img_src") for n in range(2)]
        return PageResult(
            url, depth, status=200, content_type="text/html", images=images, links=self.pages[url]
        )

    def image_urls(self) -> set[str]:
        return {f"{page}img{n}.png" for page in self.pages for n in range(2)}


def tree_site() -> FakeSite:
    a, b, c = SEED + "a/", SEED + "b/", SEED + "a/c/"
    return FakeSite({SEED: [a, b], a: [c, SEED], b: [], c: [a]})


def node_loop(url: str, clock: ManualClock, stop: threading.Event) -> None:
    """A node that stores every task it leases; while it waits, time moves on."""
    client = wire.connect(url, b"")
    try:
        client.join("fake-node", {"concurrency": 8})
        while not stop.is_set():
            reply = client.lease_batch("fake-node", 16, 0.02)
            if reply.tasks:
                results = [
                    Result(t.id, t.url, "fake-node", outcome=STORED, status=200, bytes=5)
                    for t in reply.tasks
                ]
                client.report_results("fake-node", results)
            elif reply.done:
                client.leave("fake-node")
                return
            else:
                clock.advance(1.0)
    finally:
        client.close()


@dataclass
class Run:
    code: int
    out: Path

    def manifest(self) -> list[dict]:
        return read_manifest(self.out / "manifest.jsonl")

    def events(self, name: str) -> list[dict[str, str]]:
        lines = (self.out / "progress.log").read_text().splitlines()
        return [event for event in map(parse_line, lines) if event.get("event") == name]


@pytest.fixture
def crawl(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Run one harvester to its end, with a fake node beside it."""

    def run(
        site: FakeSite,
        harvester_hook: Callable[[Harvester], None] | None = None,
        sitemaps: Callable[[str, bool], PageResult] | None = None,
        max_sitemaps: int = 100,
    ) -> Run:
        listen = f"memory://crawl-{next(_names)}"
        config = Config(
            crawl=CrawlConfig(
                obey_robots=False, parse_processes=0, page_workers=2, max_sitemaps=max_sitemaps
            ),
            queue=QueueConfig(listen=listen, linger_seconds=0.0),
            output=OutputConfig(out=str(tmp_path / "out")),
        )
        harvester = Harvester(
            config, [SEED], b"", pages=site.fetch, clock=site.clock, sitemaps=sitemaps
        )
        if harvester_hook is not None:
            harvester_hook(harvester)
        return Run(run_with_node(harvester, listen, site.clock), tmp_path / "out")

    yield run


def run_with_node(harvester: Harvester, listen: str, clock: ManualClock) -> int:
    """Run ``harvester`` to its end (its exit code), a node storing what it serves on
    ``listen`` beside it; stopped after ``REAL_LIMIT`` seconds whatever happens."""
    stop = threading.Event()
    node = threading.Thread(target=_node_when_served, args=(listen, clock, stop))
    node.start()
    timer = threading.Timer(REAL_LIMIT, harvester._stop, (15, None))  # never hang
    timer.start()
    try:
        return harvester.run()
    finally:
        timer.cancel()
        stop.set()
        node.join(REAL_LIMIT)


def _node_when_served(listen: str, clock: ManualClock, stop: threading.Event) -> None:
    deadline = time.monotonic() + REAL_LIMIT
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            node_loop(listen, clock, stop)
            return
        except Exception:  # not served yet (the harvester is starting): try again
            time.sleep(0.01)


def test_every_page_is_fetched_once_and_every_image_recorded_once(crawl) -> None:
    site = tree_site()

    run = crawl(site)

    assert run.code == EXIT_FINISHED
    assert sorted(url for url, _ in site.fetched) == sorted(site.pages)
    records = run.manifest()
    assert sorted(r["url"] for r in records) == sorted(site.image_urls())
    assert {r["outcome"] for r in records} == {STORED}
    (finished,) = run.events("crawl_finished")
    assert (finished["pages"], finished["stored"], finished["failed"]) == ("4", "8", "0")


def test_pages_only_a_sitemap_lists_are_crawled_and_sitemap_reads_are_bounded(crawl) -> None:
    hidden = SEED + "hidden/"
    site = FakeSite({SEED: [], hidden: []})
    asked: list[tuple[str, bool]] = []

    def sitemaps(url: str, find: bool) -> PageResult:
        asked.append((url, find))
        page = PageResult(url, 0, sitemap_job=True)
        if find:  # robots.txt names an index and a sitemap on another site
            page.sitemap = SitemapContent(
                sitemaps=[SEED + "index.xml", "http://elsewhere.test/s.xml"]
            )
        elif url.endswith("index.xml"):  # an index of itself and many more
            page.sitemap = SitemapContent(sitemaps=[f"{SEED}s{n}.xml" for n in range(10)])
        else:
            page.sitemap = SitemapContent(
                pages=[hidden, "http://elsewhere.test/p"],
                images=[(SEED + "only.png", hidden)],
            )
        return page

    run = crawl(site, sitemaps=sitemaps, max_sitemaps=3)
    assert run.code == 0
    assert {url for url, _ in site.fetched} == {SEED, hidden}  # nothing off the site
    assert asked[0] == ("http://site.test/", True)
    assert [url for url, find in asked if not find] == [
        SEED + "index.xml",
        SEED + "s0.xml",
        SEED + "s1.xml",
    ]
    by_url = {record["url"]: record for record in run.manifest()}
    assert by_url[SEED + "only.png"]["kind"] == "sitemap"
    assert by_url[SEED + "only.png"]["page"] == hidden
    assert len(run.events("sitemap_read")) == 3


def test_each_page_is_fetched_with_the_page_that_first_linked_it(crawl) -> None:
    site = tree_site()
    assert crawl(site).code == 0
    a, b, c = SEED + "a/", SEED + "b/", SEED + "a/c/"
    assert site.linked_from == {SEED: "", a: SEED, b: SEED, c: a}


def test_a_page_that_fails_for_a_passing_reason_is_tried_again_after_its_pause(crawl) -> None:
    site = tree_site()
    flaky = SEED + "b/"
    site.failures[flaky] = 2

    run = crawl(site)

    assert run.code == EXIT_FINISHED
    tries = [when for url, when in site.fetched if url == flaky]
    assert len(tries) == 3
    pauses = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert pauses[0] >= 1.0 and pauses[1] >= 2.0, pauses  # 1, 2, 4 ... s between tries
    assert [e["url"] for e in run.events("page_retry")] == [flaky, flaky]
    assert len([r for r in run.manifest() if r["page"] == flaky]) == 2


def test_a_stopped_crawl_resumes_where_it_stopped_and_loses_nothing(crawl) -> None:
    site = tree_site()
    stopper: list[Harvester] = []

    def stop_at_the_second_page(url: str) -> None:
        if len(site.fetched) == 2:
            stopper[0]._stop(15, None)

    site.on_fetch = stop_at_the_second_page
    first = crawl(site, stopper.append)
    assert first.code == 128 + 15
    assert first.events("crawl_stopped")

    site.on_fetch = None
    second = crawl(site)

    assert second.code == EXIT_FINISHED
    assert second.events("crawl_resumed")
    records = second.manifest()
    assert sorted(r["url"] for r in records) == sorted(site.image_urls()), "each image once"
    assert set(site.pages) == {url for url, _ in site.fetched}
