"""HTTP for hostile servers: address checks, manual redirects, bounded decompression.

Shared by the harvester's page fetching and the downloaders, so both obey one policy:

* Only public addresses, checked on the address actually connected to (so DNS tricks
  and redirects cannot reach loopback, private, link-local or multicast hosts), unless
  ``allow_private`` is set.
* Redirects followed one by one, at most ``max_redirects``, each target re-checked
  (http and https only).
* Bodies decompressed in bounded steps, so a gzip bomb costs at most what the caller
  reads, never the bomb's full size at once.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import os
import re
import socket
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.cookies import get_cookie_header
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from crawler.compat.gevent import wrapped_socket
from crawler.compat.urllib3 import NewSocketCheck, pool_is_closed, use_pool_classes
from crawler.config import CrawlConfig
from crawler.errors import (
    BadEncoding,
    BadRedirect,
    BlockedAddress,
    ConfigError,
    TooManyRedirects,
)
from crawler.urls import resolve
from crawler.web.credentials import HostHeaders, credentials
from crawler.web.proxies import PROXY_VARIABLES, Proxies, check_target

CHUNK_BYTES = 256 * 1024
# A URL with any of these needs requests' quoting before it can go on the wire.
_UNQUOTED = re.compile(r"[^\x21-\x7e]")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressPolicy:
    """Which peer addresses we may connect to: public ones, plus what the user allows."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, config: CrawlConfig) -> AddressPolicy:
        networks = tuple(ipaddress.ip_network(text) for text in config.allow_networks)
        return cls(config.allow_private, networks)

    def allows(self, address: str) -> bool:
        """May we connect to this IP address? Pure: no lookups."""
        if self.allow_private:
            return True
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed_networks):
            return True
        return ip.is_global and not ip.is_multicast


class _AddressCheck(NewSocketCheck):
    """Mixed into urllib3 connections: refuse the socket if its peer is not allowed."""

    policy = AddressPolicy()

    def check_new_socket(self, sock: socket.socket) -> None:
        peer = sock.getpeername()[0]
        if not self.policy.allows(peer):
            refused = BlockedAddress(
                f"{self.host} is at {peer}, a non-public address "  # type: ignore[attr-defined]
                "(use --allow-private to crawl private networks)"
            )
            refused.address = peer  # the downloader asks whether the crawl would allow it
            raise refused

    @property
    def is_connected(self) -> bool:
        """urllib3's check before reusing a pooled connection (is the peer silent?), as
        one non-blocking peek on the socket gevent wraps instead of a gevent ``poll``
        object per check, which was a twentieth of the downloader's time."""
        raw = wrapped_socket(self.sock)  # type: ignore[attr-defined]
        if raw is None:
            return super().is_connected  # type: ignore[misc]
        try:
            raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing to read: open and idle, as it should be
        except OSError:
            return False
        return False  # end of file, or bytes no request asked for: do not reuse


@cache
def _pool_classes(policy: AddressPolicy) -> dict[str, type]:
    pools = {}
    for scheme, pool, connection in (
        ("http", HTTPConnectionPool, HTTPConnection),
        ("https", HTTPSConnectionPool, HTTPSConnection),
    ):
        checked = type(
            f"Checked{connection.__name__}",
            (_AddressCheck, connection),
            {"policy": policy},
        )
        pools[scheme] = type(f"Checked{pool.__name__}", (pool,), {"ConnectionCls": checked})
    return pools


class _CheckedAdapter(HTTPAdapter):
    """requests' adapter with our connection classes, and two shortcuts for the common
    request (no proxy, no client certificate) that skip re-parsing the URL, paid on
    every image otherwise (docs/design-notes.md)."""

    def __init__(self, policy: AddressPolicy, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._policy = policy
        self._pools: dict[str, HTTPConnectionPool] = {}  # by scheme://host:port
        self._max_pools = 2 * kwargs.get("pool_connections", 10)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        use_pool_classes(self.poolmanager, _pool_classes(self._policy))

    def get_connection_with_tls_context(  # type: ignore[no-untyped-def]
        self, request, verify, proxies=None, cert=None
    ):
        if proxies or cert is not None or not isinstance(verify, bool | str):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        origin = request.url.split("/", 3)
        key = "/".join(origin[:3]).lower()
        if verify is not True:  # a CA bundle's pools are not the public CAs' pools
            key += f" {verify}"
        pool = self._pools.get(key)
        if pool is None or pool_is_closed(pool):  # new, or closed by the manager's LRU
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            if len(self._pools) >= self._max_pools:
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def build_response(self, req, resp):  # type: ignore[no-untyped-def]
        """For a lean request, requests' own steps minus the two an image GET needs
        not: copying the headers (urllib3's are case-insensitive already) and reading
        cookies into a jar no one sends, paid on every image (docs/design-notes.md)."""
        if not isinstance(req, _LeanRequest):
            return super().build_response(req, resp)
        response = requests.Response()
        response.status_code = resp.status
        response.headers = resp.headers
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def request_url(self, request, proxies):  # type: ignore[no-untyped-def]
        if proxies:
            return super().request_url(request, proxies)
        url = request.path_url
        # As requests does: a path starting with "//" would read as a host.
        return f"/{url.lstrip('/')}" if url.startswith("//") else url


# Environment variables naming a CA bundle, in the order requests reads them.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def tls_verify(ca_bundle: str, environ: Mapping[str, str]) -> str | bool:
    """What HTTPS certificates are checked against: the ``ca_bundle`` setting, else
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (as requests reads them), else True
    (the bundled public CAs). A bundle that is not there is a ``ConfigError`` that
    names where it came from, at start, instead of every HTTPS request failing."""
    origin, path = "ca_bundle", ca_bundle
    for name in CA_BUNDLE_VARIABLES:
        if path:
            break
        origin, path = name, environ.get(name, "")
    if not path:
        return True
    if not (os.path.isfile(path) or os.path.isdir(path)) or not os.access(path, os.R_OK):
        raise ConfigError(f"{origin}: no readable CA bundle (file or folder) at {path!r}")
    return path


@dataclass(frozen=True)
class SessionOptions:
    """What a session's requests carry and go through, beyond its address policy:
    ``verify`` (``tls_verify``), ``cookies`` (``credentials.load_cookies``),
    ``host_headers`` (``credentials.HostHeaders``) and ``proxies`` (``Proxies``)."""

    verify: str | bool = True
    cookies: http.cookiejar.CookieJar | None = None
    host_headers: HostHeaders | None = None
    proxies: Proxies | None = None


ENVIRONMENT_VARIABLES = (*CA_BUNDLE_VARIABLES, *PROXY_VARIABLES)


def session_options(config: CrawlConfig, environ: Mapping[str, str]) -> SessionOptions:
    """The options the settings and the environment give, worked out once per set of
    them (the page threads ask before every page). A CA bundle, cookies file or proxy
    that cannot be used is a ``ConfigError``: callers ask at start to say it there."""
    return _options(config, tuple(environ.get(name, "") for name in ENVIRONMENT_VARIABLES))


@cache
def _options(config: CrawlConfig, environment: tuple[str, ...]) -> SessionOptions:
    environ = dict(zip(ENVIRONMENT_VARIABLES, environment, strict=True))
    cookies, host_headers = credentials(config)
    return SessionOptions(
        tls_verify(config.ca_bundle, environ),
        cookies,
        host_headers,
        Proxies.from_settings(config.proxy, environ),
    )


def make_session(
    pool_size: int,
    user_agent: str,
    policy: AddressPolicy,
    options: SessionOptions = SessionOptions(),
) -> requests.Session:
    """A Session whose connections obey the address policy, pooled per host, with
    ``options`` on every request path, the lean image path included: certificates
    checked against ``options.verify``; the cookies that match each request; the
    headers its host's rules give; and, with proxies, each request through the proxy
    of its URL's scheme, the target checked against the policy first
    (``proxies.check_target``).

    ``trust_env`` is off: a crawler should not pick up ``.netrc`` credentials, and the
    environment's proxies and CA bundles are read explicitly instead (``Proxies``,
    ``tls_verify``), so that the address guard sees every proxied target.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = options.verify
    if options.cookies is not None:
        session.cookies = options.cookies  # type: ignore[assignment]  (any jar merges)
    session.crawler_cookies = options.cookies is not None  # type: ignore[attr-defined]
    session.host_headers = options.host_headers  # type: ignore[attr-defined]
    session.crawler_proxies = options.proxies or None  # type: ignore[attr-defined]
    session.crawler_policy = policy  # type: ignore[attr-defined]
    adapter = _CheckedAdapter(policy, pool_connections=64, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def open_url(
    session: requests.Session,
    url: str,
    timeout: tuple[float, float] | float,
    max_redirects: int,
    headers: dict[str, str] | None = None,
    *,
    lean: bool = False,
) -> requests.Response:
    """GET ``url`` as a stream, following redirects ourselves so each hop is checked.

    Raises ``BadRedirect`` for a redirect to anything but http(s), ``TooManyRedirects``
    past ``max_redirects``, ``BlockedAddress`` for a non-public peer, and the usual
    ``requests`` exceptions for network failures. The caller closes the response.

    ``lean`` (for images) hands a request built once straight to the session's
    adapter: no cookie jar, hooks or per-request merging of settings, which made
    ``Session.get`` cost more than the adapter's own work (docs/design-notes.md).
    Same pool, same checks, same errors.
    """
    host_headers = getattr(session, "host_headers", None)
    proxies: Proxies | None = getattr(session, "crawler_proxies", None)
    for _hop in range(max_redirects + 1):
        hop_headers = headers
        if host_headers:  # per hop: a redirect to another host gets that host's
            hop_headers = {**(headers or {}), **host_headers.for_url(url)}
        proxy = proxies.for_url(url) if proxies else None
        hop_proxies = None
        if proxy is not None:  # the proxy connects to the target: we check it first
            check_target(url, session.crawler_policy.allows)  # type: ignore[attr-defined]
            hop_proxies = {"http": proxy, "https": proxy}
        if lean:
            response = _send_lean(session, url, timeout, hop_headers, hop_proxies)
        else:
            response = session.get(
                url,
                stream=True,
                timeout=timeout,
                allow_redirects=False,
                headers=hop_headers,
                proxies=hop_proxies,
            )
        if not response.is_redirect:
            return response
        location = response.headers.get("Location", "")
        response.close()
        target = resolve(url, location)
        if target is None:
            raise BadRedirect(f"redirect to a URL we do not fetch: {location[:200]!r}")
        url = target
    raise TooManyRedirects(f"more than {max_redirects} redirects")


def _send_lean(
    session: requests.Session,
    url: str,
    timeout: tuple[float, float] | float,
    headers: dict[str, str] | None,
    proxies: dict[str, str] | None = None,
) -> requests.Response:
    request = _LeanRequest()
    request.method = "GET"
    if _UNQUOTED.search(url):
        request.prepare_url(url, None)  # IDNA and quoting, as Session.get would
    else:
        request.url = url
    request.headers = CaseInsensitiveDict(session.headers)
    if headers:
        request.headers.update(headers)
    request.body = None
    request.hooks = {"response": []}
    if getattr(session, "crawler_cookies", False):  # the cookies.txt's, matched as usual
        cookie = get_cookie_header(session.cookies, request)
        if cookie:
            request.headers["Cookie"] = cookie
    adapter = session.get_adapter(request.url)
    return adapter.send(
        request, stream=True, timeout=timeout, verify=session.verify, proxies=proxies
    )


class _LeanRequest(requests.PreparedRequest):
    """A request ``open_url(..., lean=True)`` built: the adapter skips cookies for it."""


def body_chunks(response: requests.Response, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The decoded body in chunks of at most ``chunk_bytes``, however well it compresses.

    Network failures surface as ``requests`` exceptions, as with ``iter_content``: a
    stalled read as ``ReadTimeout``, a body cut short as ``ChunkedEncodingError``.
    """
    try:
        yield from _decoded(response, chunk_bytes)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.ConnectionError(exc) from exc


def _arriving(response: requests.Response, chunk_bytes: int) -> Iterator[bytes]:
    """Raw body bytes as they arrive (``read1``): a trickle yields small pieces, so the
    caller can enforce a total deadline instead of waiting for a full chunk."""
    while data := response.raw.read1(chunk_bytes, decode_content=False):
        yield data


def _decoded(response: requests.Response, chunk_bytes: int) -> Iterator[bytes]:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    raw = _arriving(response, chunk_bytes)
    if encoding in ("", "identity"):
        yield from raw
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BadEncoding(f"unsupported Content-Encoding {encoding!r}")
    decoder = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        for compressed in raw:
            data = decoder.decompress(compressed, chunk_bytes)
            while data:
                yield data
                data = decoder.decompress(decoder.unconsumed_tail, chunk_bytes)
    except zlib.error as exc:
        raise BadEncoding(f"corrupt {encoding} body: {exc}") from None
