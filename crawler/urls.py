"""URL resolution, normalization and scope: pure functions, no I/O."""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, urlsplit

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
# "#" is not safe: a character the query's encoding lacks becomes "&#N;", and a bare
# "#" there would start a fragment.
_SAFE = "!$%&'()*+,/:;=?@[]~"
_HOST_DIR_OK = re.compile(r"[^a-z0-9.\-]")
# The WHATWG URL standard's forbidden domain code points: a browser refuses such a host.
_FORBIDDEN_IN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_NEEDS_ENCODING = re.compile(f"[^A-Za-z0-9_.~\\-{re.escape(_SAFE)}]")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# A browser deletes every tab and newline from a URL before parsing it.
_TAB_AND_NEWLINE = str.maketrans("", "", "\t\n\r")
# RFC 3986 appendix B with the RFC's scheme syntax. Groups: scheme, authority, path, query,
# fragment; an absent component is None, an empty one is "" (the RFC's "defined" test).
_URI_REFERENCE = re.compile(
    r"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.S
)


def normalize(url: str, query_encoding: str = "utf-8") -> str | None:
    """Canonical form of an absolute http(s) URL, or None when it is not one we fetch.

    Lower-cases scheme and host, drops the default port and the fragment, removes dot
    segments (keeping empty ones: ``a//b`` is not ``a/b``), percent-encodes spaces and
    non-ASCII characters the way a browser sends them and upper-cases the hex digits of
    every escape, so that two spellings of one URL compare equal. The path is always
    UTF-8; the query uses ``query_encoding``, the encoding of the page the URL is on.
    """
    scheme, authority, path, query, _ = _split_reference(_without_tabs_and_newlines(url.strip()))
    if scheme is None or authority is None or scheme.lower() not in DEFAULT_PORTS:
        return None
    scheme = scheme.lower()
    netloc = _canonical_netloc(scheme, authority)
    if netloc is None:
        return None
    path = _percent_encode(remove_dot_segments(path) or "/")
    if query:
        return f"{scheme}://{netloc}{path}?{_percent_encode(query, query_encoding)}"
    return f"{scheme}://{netloc}{path}"


@functools.lru_cache(maxsize=1024)
def _canonical_netloc(scheme: str, authority: str) -> str | None:
    """``host`` or ``host:port`` without user info or default port; None if not fetchable.

    Cached: a page names a handful of hosts many times, and IDNA encoding is slow.
    """
    try:
        parts = urlsplit(f"//{authority}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or "%" in parts.hostname:  # fe80::1%eth0: browsers refuse zone IDs
        return None
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if ":" in host:  # IPv6; urlsplit has checked the address inside the brackets
        host = f"[{host}]"
    elif _FORBIDDEN_IN_HOST.search(host):
        return None
    return host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"


def _percent_encode(text: str, encoding: str = "utf-8") -> str:
    """Percent-encode what a browser would, keep existing escapes, upper-case their hex.
    Characters ``encoding`` cannot represent become ``&#N;`` first, as in browsers."""
    if _NEEDS_ENCODING.search(text):
        text = quote(text, safe=_SAFE, encoding=encoding, errors="xmlcharrefreplace")
    if "%" in text:
        text = _PERCENT_ESCAPE.sub(lambda escape: escape.group().upper(), text)
    return text


def _without_tabs_and_newlines(text: str) -> str:
    if "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_TAB_AND_NEWLINE)
    return text


def resolve(base: str, reference: str, query_encoding: str = "utf-8") -> str | None:
    """Resolve a reference found on a page against the page's URL and normalize it.

    Returns None for references that are not a fetchable page or image: empty ones,
    same-page fragments, ``data:``, ``javascript:``, ``mailto:`` and other schemes.
    """
    reference = _without_tabs_and_newlines(reference.strip())
    if not reference or reference.startswith(("data:", "javascript:", "mailto:", "#")):
        return None
    return normalize(join_reference(base, reference), query_encoding)


def join_reference(base: str, reference: str) -> str:
    """The target URI of ``reference`` relative to ``base``, as in RFC 3986 section 5.2.

    Unlike Python 3.11's ``urljoin`` this keeps empty path segments (``images//x.png``),
    as a browser does. ``http:g`` against an ``http`` base is relative (the RFC's
    backward-compatible reading, which browsers follow for http and https).
    """
    base_scheme, base_authority, base_path, base_query, _ = _split_base(base)
    scheme, authority, path, query, fragment = _split_reference(reference)
    if (
        scheme is not None
        and authority is None
        and scheme.lower() == (base_scheme or "").lower()
        and scheme.lower() in DEFAULT_PORTS
    ):
        scheme = None
    if scheme is not None:
        path = remove_dot_segments(path)
    elif authority is not None:
        scheme, path = base_scheme, remove_dot_segments(path)
    elif not path:
        scheme, authority, path = base_scheme, base_authority, base_path
        query = base_query if query is None else query
    else:
        if not path.startswith("/"):
            path = _merge_paths(base_authority, base_path, path)
        scheme, authority, path = base_scheme, base_authority, remove_dot_segments(path)
    return _recompose(scheme, authority, path, query, fragment)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: interpret ``.`` and ``..`` segments; empty segments stay."""
    if "/." not in path and not path.startswith("."):
        return path
    segments = path.split("/")
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            # never pop the empty segment in front of an absolute path's first "/"
            if len(output) > 1 or (output and output[0]):
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")
    return "/".join(output)


def _split_reference(reference: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    match = _URI_REFERENCE.fullmatch(reference)
    assert match is not None  # every group is optional, so every string matches
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


# A page resolves all its references against one base.
_split_base = functools.lru_cache(maxsize=64)(_split_reference)


def _merge_paths(base_authority: str | None, base_path: str, path: str) -> str:
    if base_authority is not None and not base_path:
        return "/" + path
    return base_path[: base_path.rfind("/") + 1] + path


def _recompose(
    scheme: str | None, authority: str | None, path: str, query: str | None, fragment: str | None
) -> str:
    parts = [f"{scheme}:" if scheme is not None else ""]
    if authority is not None:
        parts.append(f"//{authority}")
    parts.append(path)
    if query is not None:
        parts.append(f"?{query}")
    if fragment is not None:
        parts.append(f"#{fragment}")
    return "".join(parts)


def without_userinfo(url: str) -> str:
    """``url`` as messages and files may show it: a user and password become ``***``."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def host_of(url: str) -> str:
    """``host`` or ``host:port`` of a normalized URL (the unit of scope)."""
    return urlsplit(url).netloc


def host_matches(netloc: str, pattern: str, subdomains: bool = False) -> bool:
    """True when a URL's ``host[:port]`` is covered by one host pattern."""
    host, _, port = netloc.rpartition(":") if has_port(netloc) else (netloc, "", "")
    pattern = pattern.strip().lower()
    if pattern.startswith("*."):
        pattern, subdomains = pattern[2:], True
    want_host, _, want_port = pattern.rpartition(":") if has_port(pattern) else (pattern, "", "")
    if want_port and want_port != port:
        return False
    return host == want_host or (subdomains and host.endswith("." + want_host))


def has_port(netloc: str) -> bool:
    # "[::1]:80" has a port, "[::1]" has not; hosts are already lowercase and IDNA.
    return netloc.rfind(":") > netloc.rfind("]")


def looks_like_image(url: str) -> bool:
    """True when the URL's path ends with an image file extension."""
    path = _split_reference(url)[2].lower()
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


REFERER_POLICIES = ("page", "origin", "none")


def referer_for(page: str | None, target: str, policy: str) -> str | None:
    """The ``Referer`` a request for ``target`` found on ``page`` carries: the page
    itself (``page``, without fragment or credentials), its origin (``origin``,
    ``scheme://host:port/``), or none. Never from an https page to an http URL, as
    browsers do: the page's address is not sent in clear."""
    if not page or policy == "none":
        return None
    parts = urlsplit(page)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.scheme == "https" and target.lower().startswith("http:"):
        return None
    netloc = parts.netloc.rpartition("@")[2]
    if policy == "origin":
        return f"{parts.scheme}://{netloc}/"
    path = parts.path or "/"
    return f"{parts.scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")
