"""How nodes reach the crawl's broker, and how a harvester serves it: a wire chosen by
the URL's scheme.

``connect(url, authkey)`` gives a node its ``BrokerClient`` (``base.py``);
``serve(broker, url, authkey, settings)`` gives the harvester its ``Server``:

* ``tcp://HOST:PORT`` or plain ``HOST:PORT``: the harvester's manager over TCP
  (``manager_client.py``, ``manager_server.py``).
* ``memory://NAME``: a ``Broker`` in this process (``inprocess.py``; tests and tools).

Another wire (Redis, TLS) adds its scheme to ``CLIENTS`` and ``SERVERS`` here and to
``config.BROKER_SCHEMES`` (which checks the URLs of the settings); nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from crawler.config import parse_address, split_broker_url
from crawler.errors import ConfigError
from crawler.wire.base import BrokerClient, RecordClient

if TYPE_CHECKING:
    from crawler.broker.broker import Broker
    from crawler.config import QueueConfig
    from crawler.wire.inprocess import InProcessServer


class Server(Protocol):
    """A broker served to nodes: reachable from ``start`` until ``stop``."""

    where: str  # what nodes connect to, for messages

    def start(self) -> None: ...
    def stop(self) -> None: ...


_IN_PROCESS: dict[str, InProcessServer] = {}


def _tcp(rest: str, authkey: bytes) -> BrokerClient:
    from crawler.wire.manager_client import ManagerWire

    return RecordClient(ManagerWire(parse_address(rest, "connect"), authkey))


def _memory(rest: str, authkey: bytes) -> BrokerClient:
    from crawler.wire.inprocess import InProcessWire

    server = _IN_PROCESS.get(rest)
    if server is None:
        raise ConfigError(f"connect: no broker is served in this process as memory://{rest}")
    return RecordClient(InProcessWire(server))


def _serve_tcp(broker: Broker, rest: str, authkey: bytes, settings: QueueConfig) -> Server:
    from crawler.wire.manager_server import BrokerServer, ServerLimits

    address = parse_address(rest, "listen")
    return BrokerServer(broker, address, authkey, ServerLimits.from_config(settings))


def _serve_memory(broker: Broker, rest: str, _authkey: bytes, _settings: QueueConfig) -> Server:
    from crawler.wire.inprocess import InProcessServer

    _IN_PROCESS[rest] = InProcessServer(broker, f"memory://{rest}")
    return _IN_PROCESS[rest]


CLIENTS: dict[str, Callable[[str, bytes], BrokerClient]] = {"tcp": _tcp, "memory": _memory}
SERVERS: dict[str, Callable[[Broker, str, bytes, QueueConfig], Server]] = {
    "tcp": _serve_tcp,
    "memory": _serve_memory,
}


def connect(url: str, authkey: bytes) -> BrokerClient:
    """A client of the broker at ``url``. Connecting may raise what ``BrokerClient``'s
    calls raise (``BrokerUnavailable``, ``AuthKeyError``, ``NotAHarvester``)."""
    scheme, rest = split_broker_url(url, "connect")
    return CLIENTS[scheme](rest, authkey)


def serve(broker: Broker, url: str, authkey: bytes, settings: QueueConfig) -> Server:
    """A server of ``broker`` at ``url`` (``queue.listen``), not started yet. Raises
    ``ConfigError`` for an address it cannot listen on."""
    scheme, rest = split_broker_url(url, "listen")
    return SERVERS[scheme](broker, rest, authkey, settings)
