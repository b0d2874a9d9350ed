"""How nodes reach the crawl's broker: a wire chosen by the URL's scheme.

``connect(url, authkey)`` gives a node its ``BrokerClient`` (``base.py``):

* ``tcp://HOST:PORT`` or plain ``HOST:PORT``: the harvester's manager over TCP
  (``manager_client.py``; the harvester serves it with ``manager_server.py``).
* ``memory://NAME``: a ``Broker`` in this process, registered with ``serve_in_process``
  (``inprocess.py``; tests and tools).

Another wire (Redis, TLS) adds its scheme to ``SCHEMES`` and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crawler.errors import ConfigError
from crawler.wire.base import BrokerClient, RecordClient

if TYPE_CHECKING:
    from crawler.broker.broker import Broker

_IN_PROCESS: dict[str, Broker] = {}


def _tcp(rest: str, authkey: bytes) -> BrokerClient:
    from crawler.config import parse_address
    from crawler.wire.manager_client import ManagerWire

    return RecordClient(ManagerWire(parse_address(rest, "connect"), authkey))


def _memory(rest: str, authkey: bytes) -> BrokerClient:
    from crawler.wire.inprocess import InProcessWire

    broker = _IN_PROCESS.get(rest)
    if broker is None:
        raise ConfigError(f"connect: no broker is served in this process as memory://{rest}")
    return RecordClient(InProcessWire(broker, f"memory://{rest}"))


SCHEMES: dict[str, Callable[[str, bytes], BrokerClient]] = {"tcp": _tcp, "memory": _memory}


def split_url(url: str) -> tuple[str, str]:
    """``"tcp://h:1"`` -> ``("tcp", "h:1")``; a URL without a scheme is ``tcp``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "tcp", url
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise ConfigError(f"connect: unknown broker scheme {scheme}:// in {url!r} ({known})")
    return scheme, rest


def connect(url: str, authkey: bytes) -> BrokerClient:
    """A client of the broker at ``url``. Connecting may raise what ``BrokerClient``'s
    calls raise (``BrokerUnavailable``, ``AuthKeyError``, ``NotAHarvester``)."""
    scheme, rest = split_url(url)
    return SCHEMES[scheme](rest, authkey)


def serve_in_process(broker: Broker, name: str) -> str:
    """Make ``broker`` reachable as ``memory://NAME`` in this process; returns the URL."""
    _IN_PROCESS[name] = broker
    return f"memory://{name}"


def stop_serving_in_process(name: str) -> None:
    _IN_PROCESS.pop(name, None)
