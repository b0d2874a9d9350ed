"""Choosing a wire by URL: every scheme the config accepts has a client and a server."""

from __future__ import annotations

import pytest

from crawler import wire
from crawler.broker.broker import Broker
from crawler.config import BROKER_SCHEMES, QueueConfig, check_broker_url
from crawler.errors import BrokerUnavailable, ConfigError
from crawler.records import STORED, Result


def test_every_scheme_the_config_accepts_has_a_client_and_a_server() -> None:
    assert set(wire.CLIENTS) == set(wire.SERVERS) == set(BROKER_SCHEMES)


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:5599",
        "tcp://127.0.0.1:5599",
        "tcp://[::1]:5599",
        "memory://crawl",
        "redis://127.0.0.1:6379/0",
        "rediss://redis.example:6380/1",
    ],
)
def test_broker_urls_that_are_accepted(url: str) -> None:
    check_broker_url(url, "connect")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://127.0.0.1:5672", "unknown broker scheme amqp://"),
        ("redis://", "needs a name"),
        ("tcp://127.0.0.1", "expected HOST:PORT"),
        ("memory://", "needs a name"),
    ],
)
def test_broker_urls_that_are_refused_say_why(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_broker_url(url, "connect")


def test_a_broker_served_in_memory_is_reached_by_its_url_until_it_stops() -> None:
    broker = Broker(60.0, 3, 30.0, max_lease_wait=0.0)
    broker.add_tasks([("http://img.test/1.png", "http://site.test/", "img_src")])
    server = wire.serve(broker, "memory://wire-test", b"", QueueConfig())
    server.start()
    client = wire.connect("memory://wire-test", b"")

    assert client.join("n1", {}).lease_seconds == 60.0
    (task,) = client.lease_batch("n1", 5, 0.0).tasks
    stored = Result(task.id, task.url, "n1", outcome=STORED, status=200, bytes=3)
    assert client.report_results("n1", [stored]) == 1
    assert broker.counts()["stored"] == 1

    server.stop()
    with pytest.raises(BrokerUnavailable):
        client.status()
    with pytest.raises(ConfigError, match="no broker is served"):
        wire.connect("memory://nothing-here", b"")
