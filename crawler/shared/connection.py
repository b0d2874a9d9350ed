"""redis-py clients for a shared crawl, and what their errors mean to the crawler.

``open_redis(url, settings, tls)`` takes ``redis://[:password@]host:port/db`` or
``rediss://`` (TLS, verified against ``tls_ca`` when given) as redis-py parses them.
The password may instead come from ``redis_password`` (``CRAWLER_REDIS_PASSWORD``)
or ``redis_password_file`` (a file only its owner may read). A server in cluster mode
is found by itself and gets a ``RedisCluster`` client: the same code runs on both.
No message shows the password: ``where`` is the URL without its user information.

``unavailable(where)`` turns redis-py's errors into the crawler's: a lost connection
or a cluster that is down is ``BrokerUnavailable`` (retried), a refused password or
a wrong URL is ``ConfigError`` (final). ``Patience`` waits for Redis to come back,
saying so once, and once again when it is back.
"""

from __future__ import annotations

import contextlib
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions

from crawler.config import SharedConfig, TlsConfig
from crawler.errors import BrokerUnavailable, ConfigError
from crawler.urls import without_userinfo

T = TypeVar("T")
SOCKET_TIMEOUT = 10.0  # seconds a command may take before the connection counts as lost
REDIS_SCHEMES = ("redis", "rediss")
_LOST = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)


def is_redis_url(url: str) -> bool:
    return url.partition("://")[0] in REDIS_SCHEMES


def password(settings: SharedConfig) -> str | None:
    """The password from the settings or their file (None: the URL's, or none)."""
    if settings.redis_password:
        return settings.redis_password
    if not settings.redis_password_file:
        return None
    path = Path(settings.redis_password_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"redis_password_file {path}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"redis_password_file {path}: others may read it; chmod 600 {path} first")
    if not text:
        raise ConfigError(f"redis_password_file {path}: the file is empty")
    return text


def open_redis(url: str, settings: SharedConfig, tls: TlsConfig | None = None) -> Any:
    """A client of the Redis at ``url`` (``Redis`` or ``RedisCluster``), checked with a
    PING. Raises ``BrokerUnavailable`` while Redis cannot be reached, ``ConfigError``
    for a URL redis-py refuses or a password Redis refuses."""
    where = without_userinfo(url)
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
    }
    secret = password(settings)
    if secret is not None:
        options["password"] = secret
    if url.startswith("rediss://") and tls is not None and tls.tls_ca:
        options["ssl_ca_certs"] = tls.tls_ca
    try:
        client = redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"--broker {where}: {exc}") from None
    with unavailable(where):
        cluster = client.info("cluster").get("cluster_enabled") == 1
    if not cluster:
        return client
    client.close()
    with unavailable(where):
        return redis.cluster.RedisCluster.from_url(url, **options)


@contextlib.contextmanager
def unavailable(where: str) -> Iterator[None]:
    """redis-py's errors inside as the crawler's (see the module's docstring)."""
    try:
        yield
    except redis.exceptions.AuthenticationError:
        raise ConfigError(f"redis at {where} refused the password") from None
    except redis.exceptions.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise ConfigError(f"redis at {where} refused us: {str(exc).split(' ')[0]}") from None
        raise
    except _LOST as exc:
        raise BrokerUnavailable(f"redis at {where} is unreachable ({type(exc).__name__})") from None
    except redis.exceptions.RedisClusterException as exc:
        raise BrokerUnavailable(f"redis cluster at {where}: {exc}") from None


class Patience:
    """Calls that wait while Redis is away: one message when it goes, one when it is
    back, and a pause doubling from 0.1 s to 5 s between tries."""

    def __init__(self, who: str, where: str, say: Callable[[str], None] | None = None) -> None:
        self.who = who
        self.where = where
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.away_since: float | None = None

    def call(self, operation: Callable[[], T], stop: Callable[[], bool] = lambda: False) -> T:
        """``operation()`` again until Redis answers (``BrokerUnavailable`` only if
        ``stop()`` turns true meanwhile)."""
        pause = 0.1
        while True:
            try:
                with unavailable(self.where):
                    value = operation()
            except BrokerUnavailable as exc:
                if self.away_since is None:
                    self.away_since = time.monotonic()
                    self.say(f"{self.who}: {exc}; waiting for it to come back")
                if stop():
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            if self.away_since is not None:
                away = time.monotonic() - self.away_since
                self.say(f"{self.who}: redis at {self.where} is back after {away:.1f} s")
                self.away_since = None
            return value
