"""Forward proxies: which proxy a request goes through, from the ``proxy`` setting or
the standard ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` variables.

Guarantee: the address guard still holds for the target. The proxy would connect to
whatever a URL names, so a proxied request's host is resolved here first and refused
(``BlockedAddress``) unless every address it has is one the crawl's policy allows.
The proxy itself is the user's choice and is allowed as it is, wherever it is:
proxied connections go through urllib3's ``ProxyManager``, not the checked pools.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from crawler.errors import BlockedAddress, ConfigError

_VARIABLES = {"http": ("HTTP_PROXY", "http_proxy"), "https": ("HTTPS_PROXY", "https_proxy")}
_NO_PROXY = ("NO_PROXY", "no_proxy")
# Every environment variable ``Proxies.from_settings`` reads.
PROXY_VARIABLES = (*_VARIABLES["http"], *_VARIABLES["https"], *_NO_PROXY)


@dataclass(frozen=True)
class Proxies:
    """The proxy for each scheme (None: direct), and the hosts that bypass it."""

    http: str | None = None
    https: str | None = None
    no_proxy: str = ""
    # Proxies from the environment (set for other programs, a package installer's,
    # say) never take loopback URLs: the proxy's loopback is not this machine's.
    direct_loopback: bool = False

    @classmethod
    def from_settings(cls, proxy: str, environ: Mapping[str, str]) -> Proxies:
        """The ``proxy`` setting for both schemes; else the environment's variables.
        A proxy that is not an http(s) URL is a ``ConfigError`` (credentials not shown)."""
        from_environment = not proxy
        if proxy:
            http = https = proxy
        else:
            http, https = (
                next((environ[name] for name in names if environ.get(name)), None)
                for names in _VARIABLES.values()
            )
        for url in filter(None, (http, https)):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"proxy: expected http://HOST:PORT, got {_shown(url)!r}")
        no_proxy = next((environ[name] for name in _NO_PROXY if environ.get(name)), "")
        return cls(http, https, no_proxy, from_environment)

    def __bool__(self) -> bool:
        return bool(self.http or self.https)

    def for_url(self, url: str) -> str | None:
        """The proxy ``url`` goes through (None: direct, or bypassed by NO_PROXY)."""
        parts = urlsplit(url)
        proxy = {"http": self.http, "https": self.https}.get(parts.scheme)
        if proxy is None:
            return None
        if self.direct_loopback and _is_loopback(parts.hostname or ""):
            return None
        if self.no_proxy and urllib.request.proxy_bypass_environment(
            parts.netloc, {"no": self.no_proxy}
        ):
            return None
        return proxy


def check_target(url: str, allows: Callable[[str], bool]) -> None:
    """Refuse a proxied URL whose host has an address the policy does not allow."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return  # the proxy will say it cannot resolve it either: its answer, not ours
    for info in infos:
        address = info[4][0]
        if not allows(address):
            refused = BlockedAddress(
                f"{host} is at {address}, a non-public address "
                "(use --allow-private to crawl private networks)"
            )
            refused.address = address
            raise refused


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> str:
    """A proxy URL without its credentials."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
