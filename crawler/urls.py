"""URL resolution, normalization and scope: pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".gif",
        ".webp",
        ".avif",
        ".bmp",
        ".tif",
        ".tiff",
        ".ico",
        ".svg",
    }
)
# Characters a browser would percent-encode before sending; keep existing escapes.
_SAFE = "!#$%&'()*+,/:;=?@[]~"
_HOST_DIR_OK = re.compile(r"[^a-z0-9.\-]")
# The WHATWG URL standard's forbidden domain code points: a browser refuses such a host.
_FORBIDDEN_IN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")


def normalize(url: str) -> str | None:
    """Canonical form of an absolute http(s) URL, or None when it is not one we fetch.

    Lower-cases scheme and host, drops the default port and the fragment,
    percent-encodes spaces and non-ASCII characters the way a browser sends them.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if ":" in host:  # IPv6; urlsplit has checked the address inside the brackets
        host = f"[{host}]"
    elif _FORBIDDEN_IN_HOST.search(host):
        return None
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_SAFE)
    query = quote(parts.query, safe=_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def resolve(base: str, reference: str) -> str | None:
    """Resolve a reference found on a page against the page's URL and normalize it."""
    reference = reference.strip()
    if not reference or reference.startswith(("data:", "javascript:", "mailto:", "#")):
        return None
    return normalize(urljoin(base, reference))


def host_of(url: str) -> str:
    """``host`` or ``host:port`` of a normalized URL (the unit of scope)."""
    return urlsplit(url).netloc


def in_scope(url: str, allowed_hosts: Iterable[str]) -> bool:
    """True when the URL's host (with port) is one the crawl may visit."""
    return host_of(url) in allowed_hosts


def looks_like_image(url: str) -> bool:
    """True when the URL's path ends with an image file extension."""
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot != -1 and path[dot:] in IMAGE_EXTENSIONS


def host_dir(url: str) -> str:
    """A safe folder name for the URL's host: ``example.org`` or ``127.0.0.1_8000``.

    Only ``[a-z0-9.-_]`` can come out, and never ``.`` or ``..`` alone, so no URL can
    make the storage path climb out of the output folder.
    """
    parts = urlsplit(url)
    host = _HOST_DIR_OK.sub("-", (parts.hostname or "unknown").lower())
    if host.strip(".") == "":
        host = "unknown"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}_{port}"
    return host
