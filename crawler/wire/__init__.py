"""How nodes reach the crawl's broker, and how a harvester serves it: a wire chosen by
the URL's scheme.

``connect(url, authkey, tls)`` gives a node its ``BrokerClient`` (``base.py``);
``serve(broker, url, authkey, settings, tls)`` gives the harvester its ``Server``:

* ``tcp://HOST:PORT`` or plain ``HOST:PORT``: the harvester's manager over TCP
  (``manager_client.py``, ``manager_server.py``), in TLS when ``tls`` (the ``[tls]``
  settings) says so (``tls.py``).
* ``memory://NAME``: a ``Broker`` in this process (``inprocess.py``; tests and tools).
* ``redis://`` or ``rediss://``: a crawl shared through Redis (``shared/nodewire.py``),
  named by ``shared.crawl_name``. Redis serves it: there is no ``serve`` for it (the
  harvesters of a shared crawl are ``shared.harvester``).

Another wire adds its scheme to ``CLIENTS`` and ``SERVERS`` here and to
``config.BROKER_SCHEMES`` (which checks the URLs of the settings); nothing else changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from crawler.config import SharedConfig, TlsConfig, parse_address, split_broker_url
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


def _tcp(rest: str, authkey: bytes, tls: TlsConfig, _shared: SharedConfig) -> BrokerClient:
    from crawler.wire.manager_client import HANDSHAKE_TIMEOUT, ManagerWire
    from crawler.wire.tls import client_context

    context = client_context(tls) if tls.enabled else None
    address = parse_address(rest, "connect")
    return RecordClient(ManagerWire(address, authkey, HANDSHAKE_TIMEOUT, context))


def _memory(rest: str, authkey: bytes, _tls: TlsConfig, _shared: SharedConfig) -> BrokerClient:
    from crawler.wire.inprocess import InProcessWire

    server = _IN_PROCESS.get(rest)
    if server is None:
        raise ConfigError(f"connect: no broker is served in this process as memory://{rest}")
    return RecordClient(InProcessWire(server))


def _serve_tcp(
    broker: Broker, rest: str, authkey: bytes, settings: QueueConfig, tls: TlsConfig
) -> Server:
    from crawler.wire.manager_server import BrokerServer, ServerLimits
    from crawler.wire.tls import server_context

    address = parse_address(rest, "listen")
    context = server_context(tls) if tls.enabled else None
    return BrokerServer(broker, address, authkey, ServerLimits.from_config(settings), context)


def _serve_memory(
    broker: Broker, rest: str, _authkey: bytes, _settings: QueueConfig, _tls: TlsConfig
) -> Server:
    from crawler.wire.inprocess import InProcessServer

    _IN_PROCESS[rest] = InProcessServer(broker, f"memory://{rest}")
    return _IN_PROCESS[rest]


def _redis(scheme: str) -> Callable[[str, bytes, TlsConfig, SharedConfig], BrokerClient]:
    def connect(rest: str, _authkey: bytes, tls: TlsConfig, shared: SharedConfig) -> BrokerClient:
        from crawler.shared.nodewire import RedisWire

        return RecordClient(RedisWire(f"{scheme}://{rest}", shared, tls))

    return connect


def _serve_redis(
    _broker: Broker, _rest: str, _authkey: bytes, _settings: QueueConfig, _tls: TlsConfig
) -> Server:
    raise ConfigError(
        "listen: Redis serves a shared crawl itself; run `crawler harvest --broker "
        "redis://... --crawl NAME` instead of --listen redis://"
    )


CLIENTS: dict[str, Callable[[str, bytes, TlsConfig, SharedConfig], BrokerClient]] = {
    "tcp": _tcp,
    "memory": _memory,
    "redis": _redis("redis"),
    "rediss": _redis("rediss"),
}
SERVERS: dict[str, Callable[[Broker, str, bytes, QueueConfig, TlsConfig], Server]] = {
    "tcp": _serve_tcp,
    "memory": _serve_memory,
    "redis": _serve_redis,
    "rediss": _serve_redis,
}


def connect(
    url: str, authkey: bytes, tls: TlsConfig | None = None, shared: SharedConfig | None = None
) -> BrokerClient:
    """A client of the broker at ``url`` (a Redis one: of crawl ``shared.crawl_name``).
    Connecting may raise what ``BrokerClient``'s calls raise (``BrokerUnavailable``,
    ``AuthKeyError``, ``TlsError``, ``NotAHarvester``), and ``ConfigError`` for TLS
    files that cannot be used."""
    scheme, rest = split_broker_url(url, "connect")
    return CLIENTS[scheme](rest, authkey, tls or TlsConfig(), shared or SharedConfig())


def clear_on_network(url: str, tls: TlsConfig) -> bool:
    """Whether serving at ``url`` (``queue.listen``) sends the crawl in clear beyond
    this machine: plain TCP on an address that is not loopback."""
    scheme, rest = split_broker_url(url, "listen")
    if scheme != "tcp" or tls.tls_cert:
        return False
    host = parse_address(rest, "listen")[0]
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return True


def serve(
    broker: Broker, url: str, authkey: bytes, settings: QueueConfig, tls: TlsConfig | None = None
) -> Server:
    """A server of ``broker`` at ``url`` (``queue.listen``), not started yet. Raises
    ``ConfigError`` for an address it cannot listen on or TLS files it cannot use."""
    scheme, rest = split_broker_url(url, "listen")
    return SERVERS[scheme](broker, rest, authkey, settings, tls or TlsConfig())
