"""The downloader's loop (feeder, pool, reporter) against a real ``Broker`` through the
in-process wire, in virtual time: leases, heartbeats, expiry, retries, politeness
spacing and shutdown, deterministic and in milliseconds.

The images are not fetched: ``fetch`` answers for each URL what a server would have
made of it, after the virtual seconds a download would take.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import pytest

from crawler.broker.broker import Broker
from crawler.broker.politeness import Politeness
from crawler.config import Config, DownloadConfig, OutputConfig, PolitenessConfig
from crawler.download.node import DownloaderNode
from crawler.records import FAILED, STORED, Result
from crawler.urls import host_of
from crawler.wire.base import RecordClient
from crawler.wire.inprocess import Faults, InProcessServer, InProcessWire
from tests.support.virtual_clock import VirtualClock

LEASE = 20.0
NODE_TIMEOUT = 30.0


@dataclass
class FakeWeb:
    """What each URL answers, and when each request started and ended (virtual time)."""

    clock: VirtualClock
    seconds: float = 1.0  # a download's duration
    answers: dict[str, list[Result]] = field(default_factory=dict)  # per URL, in turn
    requests: list[tuple[str, float, float]] = field(default_factory=list)

    referers: dict[str, str | None] = field(default_factory=dict)

    def fetch(self, _session: object, task_id: int, url: str, referer: str | None) -> Result:
        self.referers[url] = referer
        start = self.clock.now()
        self.clock.sleep(self.seconds)
        self.requests.append((url, start, self.clock.now()))
        queued = self.answers.get(url)
        if queued:
            answer = queued.pop(0)
            answer.id = task_id
            return answer
        return Result(task_id, url, "n1", outcome=STORED, status=200, bytes=10, elapsed=1.0)

    def fetched(self, url: str) -> int:
        return sum(1 for requested, _, _ in self.requests if requested == url)


@dataclass
class Crawl:
    clock: VirtualClock
    server: InProcessServer
    faults: Faults
    web: FakeWeb
    out: Path
    urls: list[str]
    clients: list[InProcessWire] = field(default_factory=list)

    @property
    def broker(self) -> Broker:
        return self.server.broker

    def node(self, concurrency: int = 4) -> DownloaderNode:
        config = Config(
            download=DownloadConfig(concurrency=concurrency, sync_files=False),
            output=OutputConfig(out=str(self.out)),
        )
        node = DownloaderNode(
            config,
            b"",
            "n1",
            connect=self.connect,
            fetch=self.web.fetch,
            clock=self.clock,
        )
        node.prepare_output()
        return node

    def connect(self) -> RecordClient:
        """A fresh client for each (re)connect, over the test's one network."""
        wire = InProcessWire(
            self.server, sleep=self.clock.sleep, now=self.clock.now, faults=self.faults
        )
        self.clients.append(wire)
        return RecordClient(wire)

    def harvester(self) -> None:
        """The harvester's side of the loop: take back overdue leases, end when all is
        final."""
        while not self.broker.closed:
            self.broker.maintain()
            if self.broker.all_final():
                self.broker.close()
            self.clock.sleep(0.5)

    def run(self, node: DownloaderNode, virtual_limit: float = 600.0) -> int:
        greenlets = [gevent.spawn(node.work), gevent.spawn(self.harvester)]
        try:
            self.clock.run_until(lambda: greenlets[0].dead, virtual_limit)
        finally:
            gevent.killall(greenlets)
        return greenlets[0].get()

    def outcomes(self) -> dict[str, str]:
        finished, _ = self.broker.take_updates()
        return {task.url: task.state for task in finished}


def make_crawl(tmp_path: Path, images: int, host_delay: float = 0.0) -> Crawl:
    clock = VirtualClock()
    politeness = Politeness.from_config(PolitenessConfig(host_concurrency=8, host_delay=host_delay))
    broker = Broker(LEASE, 3, NODE_TIMEOUT, clock=clock.now, politeness=politeness)
    urls = [f"http://img{n % 2}.test/{n}.png" for n in range(images)]
    broker.add_tasks((url, "http://site.test/", "img_src") for url in urls)
    server = InProcessServer(broker, "memory://node-test")
    server.start()
    return Crawl(clock, server, Faults(), FakeWeb(clock), tmp_path / "out", urls)


@pytest.fixture
def crawl(tmp_path: Path) -> Iterator[Crawl]:
    yield make_crawl(tmp_path, images=12)


def test_a_node_stores_every_task_once_and_exits_when_the_crawl_is_done(crawl: Crawl) -> None:
    node = crawl.node()

    assert crawl.run(node) == 0

    assert crawl.outcomes() == dict.fromkeys(crawl.urls, STORED)
    assert all(crawl.web.fetched(url) == 1 for url in crawl.urls)
    assert (node.stats.stored, node.stats.failed, node.held) == (12, 0, set())
    assert crawl.faults.calls[0] == "join" and crawl.faults.calls[-1] == "leave"
    assert [client.closed for client in crawl.clients] == [True]


def test_heartbeats_keep_leases_of_downloads_longer_than_the_lease(crawl: Crawl) -> None:
    crawl.web.seconds = 3 * LEASE  # each download outlasts its lease three times over

    assert crawl.run(crawl.node(concurrency=12)) == 0

    assert crawl.outcomes() == dict.fromkeys(crawl.urls, STORED)
    assert all(crawl.web.fetched(url) == 1 for url in crawl.urls), "no lease ran out"
    assert (
        crawl.faults.calls.count("extend_leases") >= 3 * LEASE / (min(LEASE, NODE_TIMEOUT) / 3) - 1
    )


def test_leases_of_a_node_cut_off_come_back_and_nothing_is_lost(crawl: Crawl) -> None:
    node = crawl.node(concurrency=12)
    crawl.web.seconds = 5.0

    def cut_off_then_return() -> None:
        crawl.clock.sleep(1.0)  # the node has leased everything and is fetching
        crawl.faults.unavailable = True
        crawl.clock.sleep(LEASE + NODE_TIMEOUT)  # past the lease and the node timeout
        assert crawl.broker.counts()["leased"] == 0, "the leases came back"
        crawl.faults.unavailable = False

    side = gevent.spawn(cut_off_then_return)
    assert crawl.run(node) == 0
    side.get()

    # Every image stored once in the manifest; stored during the cut-off, a result
    # still finalizes its task when it arrives (a lost lease is no loss).
    assert crawl.outcomes() == dict.fromkeys(crawl.urls, STORED)
    assert crawl.broker.counts() == {
        "tasks": 12,
        "leased": 0,
        "stored": 12,
        "failed": 0,
        "waiting": 0,
        "nodes": 0,  # it left at the end
    }


def test_a_retryable_failure_is_tried_again_after_retry_after(crawl: Crawl) -> None:
    url = crawl.urls[0]
    busy = Result(0, url, "n1", status=503, error="http_503", retryable=True, retry_after=30.0)
    crawl.web.answers[url] = [busy]

    assert crawl.run(crawl.node()) == 0

    assert crawl.outcomes()[url] == STORED
    (_, _, first_end), (_, second_start, _) = [
        request for request in crawl.web.requests if request[0] == url
    ]
    assert second_start - first_end >= 30.0


def test_a_final_failure_is_reported_once_and_not_retried(crawl: Crawl) -> None:
    url = crawl.urls[1]
    crawl.web.answers[url] = [Result(0, url, "n1", status=404, error="http_404")]

    assert crawl.run(crawl.node()) == 0

    assert crawl.outcomes()[url] == FAILED
    assert crawl.web.fetched(url) == 1


def test_requests_to_a_delayed_host_keep_the_delay_between_them(tmp_path: Path) -> None:
    crawl = make_crawl(tmp_path, images=8, host_delay=2.0)

    assert crawl.run(crawl.node(concurrency=8)) == 0

    assert crawl.outcomes() == dict.fromkeys(crawl.urls, STORED)
    for host in ("img0.test", "img1.test"):
        times = sorted(
            (start, end) for url, start, end in crawl.web.requests if host_of(url) == host
        )
        assert len(times) == 4
        gaps = [start - previous_end for (_, previous_end), (start, _) in itertools.pairwise(times)]
        assert min(gaps) >= 2.0, (host, gaps)


def test_results_the_harvester_failed_to_take_are_sent_again(crawl: Crawl) -> None:
    crawl.faults.fail_calls, crawl.faults.fail_only = 2, "report_results"  # its disk was full

    assert crawl.run(crawl.node()) == 0

    assert crawl.faults.fail_calls == 0
    assert crawl.outcomes() == dict.fromkeys(crawl.urls, STORED)
    assert all(crawl.web.fetched(url) == 1 for url in crawl.urls), "sent again, not fetched again"


def test_a_stop_finishes_in_flight_downloads_and_hands_the_rest_back(crawl: Crawl) -> None:
    node = crawl.node(concurrency=2)
    crawl.web.seconds = 10.0

    def stop_soon() -> None:
        crawl.clock.sleep(5.0)
        node.stop()

    side = gevent.spawn(stop_soon)
    greenlet = gevent.spawn(node.work)
    crawl.clock.run_until(lambda: greenlet.dead, virtual_limit=120.0)
    side.get()

    assert greenlet.get() == 0
    # The two in flight were finished and reported; the node left, and what it held
    # beyond them went back to the queue at once (not after the lease).
    finished = crawl.outcomes()
    assert set(finished.values()) == {STORED} and len(finished) == 2
    assert crawl.broker.counts()["leased"] == 0
    assert crawl.faults.calls[-1] == "leave"
    assert len(crawl.web.requests) == 2


@dataclass
class RecordingMetrics:
    """A ``NodeMetrics`` double: what the node told its metrics."""

    where: str = ""
    pool_size: int = 0
    in_flight_now: int = 0
    lowest_in_flight: int = 0
    highest_in_flight: int = 0
    results: list[Result] = field(default_factory=list)

    def pool(self, size: int) -> None:
        self.pool_size = size

    def in_flight(self, count: int) -> None:
        self.in_flight_now = count
        self.lowest_in_flight = min(self.lowest_in_flight, count)
        self.highest_in_flight = max(self.highest_in_flight, count)

    def reported(self, results: list[Result]) -> None:
        self.results += results

    def linger(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_node_tells_its_metrics_each_result_it_reported_and_what_is_in_flight(
    crawl: Crawl,
) -> None:
    busy, gone = crawl.urls[0], crawl.urls[1]
    crawl.web.answers[busy] = [Result(0, busy, "n1", status=503, error="http_503", retryable=True)]
    crawl.web.answers[gone] = [Result(0, gone, "n1", status=404, error="http_404")]
    node = crawl.node(concurrency=4)
    node.metrics = metrics = RecordingMetrics()

    assert crawl.run(node) == 0

    assert metrics.pool_size == 4
    assert metrics.in_flight_now == 0 and metrics.lowest_in_flight == 0
    assert 1 <= metrics.highest_in_flight <= 2 * 4 + 4  # the pool, its next batch
    stored = [r.url for r in metrics.results if r.stored]
    failed = sorted((r.url, r.error) for r in metrics.results if not r.stored)
    assert sorted(stored) == sorted(url for url in crawl.urls if url != gone)
    assert failed == sorted([(busy, "http_503"), (gone, "http_404")])


def test_each_image_request_carries_the_referer_its_lease_gave(tmp_path: Path) -> None:
    crawl = make_crawl(tmp_path, images=0)
    crawl.broker.referer = "page"
    crawl.broker.add_tasks(
        [
            ("http://img0.test/a.png", "http://site.test/gallery.html", "img_src"),
            ("http://img1.test/b.png", "", "link"),
        ]
    )

    assert crawl.run(crawl.node()) == 0

    assert crawl.web.referers == {
        "http://img0.test/a.png": "http://site.test/gallery.html",
        "http://img1.test/b.png": None,
    }
