"""Properties of crawler.urls on any string: normalize and resolve never raise and give
None or a canonical http(s) URL (printable ASCII, lower-case scheme and host, no default
port, fragment or dot segment, upper-case escapes) that normalize keeps as it is;
remove_dot_segments follows RFC 3986 section 5.2.4; host_dir is one safe folder name."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler.urls import (
    DEFAULT_PORTS,
    host_dir,
    host_of,
    normalize,
    remove_dot_segments,
    resolve,
)

PAGE = "http://example.org/dir/page.html?x=1"
# Encodings a page may declare; its URLs' queries are encoded with it.
ENCODINGS = st.sampled_from(["utf-8", "windows-1252", "iso-8859-1", "shift_jis", "koi8-r"])

# -- URL-ish strings ------------------------------------------------------------------

SCHEMES = st.sampled_from(
    ["http", "https", "HTTP", "HttpS", "ftp", "file", "data", "javascript", "mailto", "h", ""]
)
SEPARATORS = st.sampled_from(["://", ":", ":/", ":///", "//", ":\\\\", "\\\\", ""])
LABELS = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9\-_]{0,10}[a-zA-Z0-9])?", fullmatch=True),
    st.sampled_from(["bücher", "ÜBER", "例え", "xn--bcher-kva", "\uff25\uff38", "ß", "xn--"]),
    st.text(min_size=0, max_size=6),
)
HOSTS = st.one_of(
    st.lists(LABELS, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "a..b",
            ".hidden",
            "trailing.",
            "127.0.0.1",
            "0x7f.1",
            "[::1]",
            "[::FFFF:1.2.3.4]",
            "[fe80::1%25eth0]",
            "[fe80::1% x]",
            "[fe80::1%\x01]",
            "[::1%Ä]",
            "[not-ipv6]",
            "[::1",
            "::1]",
            "[v7.x]",
            "a%20b",
            "a b",
            "a\x00b",
            "a<b",
            "a\u3002b",
            "a\u3000b",
        ]
    ),
)
PORTS = st.one_of(
    st.just(""),
    st.integers(min_value=-5, max_value=100_000).map(lambda n: f":{n}"),
    st.sampled_from([":", ":80", ":443", ":0080", ":http", ": 80", ":+1", ":٣"]),
)
USERINFO = st.one_of(
    st.just(""),
    st.sampled_from(["user@", "user:pass@", "@", "a@b@", ":@", "us er:p%40ss@", "ü@"]),
)
SEGMENTS = st.one_of(
    st.sampled_from([".", "..", "", "%2e", "%2E%2e", ".a", "a.", "..a", "\\..\\", "a\\b"]),
    st.sampled_from(["%zz", "%c3%a9", "%C3%A9", "%", "100%", "%%41", "é", "图片", "a b"]),
    st.text(max_size=8),
)
PATHS = st.lists(SEGMENTS, max_size=6).map(lambda segments: "/" + "/".join(segments))
QUERIES = st.one_of(st.just(""), st.text(max_size=10).map(lambda q: "?" + q))
FRAGMENTS = st.one_of(st.just(""), st.text(max_size=6).map(lambda f: "#" + f))
PADDING = st.sampled_from(["", " ", "\t", "\n", " \r\n ", "\x00", "\x0c"])


@st.composite
def urlish(draw: st.DrawFn) -> str:
    """An absolute URL built from pieces, mostly odd ones, sometimes with tabs/newlines."""
    url = (
        draw(PADDING)
        + draw(SCHEMES)
        + draw(SEPARATORS)
        + draw(USERINFO)
        + draw(HOSTS)
        + draw(PORTS)
        + draw(PATHS)
        + draw(QUERIES)
        + draw(FRAGMENTS)
        + draw(PADDING)
    )
    if url and draw(st.booleans()):
        at = draw(st.integers(min_value=0, max_value=len(url)))
        url = url[:at] + draw(st.sampled_from(["\t", "\n", "\r"])) + url[at:]
    return url


ANY_URL = st.one_of(st.text(), urlish(), st.text(min_size=2000, max_size=3000))
REFERENCES = st.one_of(
    st.text(),
    urlish(),
    PATHS,
    st.tuples(st.sampled_from(["", "./", "../", "//", "?", "#", "\\"]), st.text(max_size=12)).map(
        "".join
    ),
    st.tuples(SEGMENTS, QUERIES, FRAGMENTS).map("".join),
)
BASES = st.one_of(st.just(PAGE), urlish(), st.text(max_size=30))

_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


def assert_canonical(url: str, query_encoding: str = "utf-8") -> None:
    """What normalize promises of a URL it returns, and what the crawler relies on."""
    assert url.startswith(("http://", "https://")), url
    assert all("\x21" <= char <= "\x7e" for char in url), url  # printable ASCII only
    assert "#" not in url, url  # the fragment is dropped
    parts = urlsplit(url)  # must not raise: host_of, host_dir and requests parse it
    assert parts.scheme in DEFAULT_PORTS
    assert parts.hostname, url
    assert parts.port != DEFAULT_PORTS[parts.scheme], url
    assert parts.netloc == parts.netloc.lower(), url
    assert "@" not in parts.netloc, url  # no user info
    assert host_of(url) == parts.netloc
    assert parts.path.startswith("/"), url
    assert not {".", ".."} & set(parts.path.split("/")), url
    assert all(escape == escape.upper() for escape in _ESCAPE.findall(url)), url
    assert normalize(url, query_encoding) == url, url


# -- normalize ------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(ANY_URL)
@example("http://[fe80::1% x]/a")  # an IPv6 zone ID held a raw space
@example("http://[fe80::1%\x01]/")
@example("http://[::1%Ä]/")  # its zone ID was IDNA-encoded into an address urlsplit refused
def test_normalize_gives_none_or_a_canonical_url(url: str) -> None:
    normalized = normalize(url)
    if normalized is not None:
        assert_canonical(normalized)


@settings(max_examples=150, deadline=None)
@given(urlish(), ENCODINGS)
@example("http://h/a?q=\u4e2d&x=1", "windows-1252")  # "&#20013;" left a raw "#" behind
def test_normalize_is_idempotent_in_any_page_encoding(url: str, encoding: str) -> None:
    normalized = normalize(url, encoding)
    if normalized is not None:
        assert_canonical(normalized, encoding)
        assert normalize(normalized) == normalized  # ASCII: the encoding no longer matters


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True),
    PATHS,
    QUERIES,
    FRAGMENTS,
)
def test_spellings_of_one_url_normalize_alike(
    scheme: str, host: str, path: str, query: str, fragment: str
) -> None:
    rest = (path + query).rstrip()  # what follows it is not at the end once a fragment does
    plain = normalize(f"{scheme}://{host}{rest}")
    spelled = f"{scheme.upper()}://user:pw@{host.upper()}:{DEFAULT_PORTS[scheme]}{rest}"
    assert normalize(f"  {spelled}{fragment}\n") == plain
    if plain is not None:
        assert urlsplit(plain).hostname == host
        lowered = _ESCAPE.sub(lambda escape: escape.group().lower(), plain)
        assert normalize(lowered) == plain


# -- resolve --------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(BASES, REFERENCES, ENCODINGS)
def test_resolve_gives_none_or_a_fixed_point_of_normalize(
    base: str, reference: str, encoding: str
) -> None:
    resolved = resolve(base, reference, encoding)
    if resolved is not None:
        assert_canonical(resolved, encoding)


@settings(max_examples=100, deadline=None)
@given(
    BASES,
    st.sampled_from(["data:", "javascript:", "mailto:", "tel:", "ftp:", "file:", "#"]),
    st.sampled_from([str.lower, str.upper, str.title]),
    st.sampled_from(["", " ", "\n\t"]),
    st.text(),
)
def test_resolve_refuses_what_is_not_a_page_or_image(
    base: str, prefix: str, case, padding: str, rest: str
) -> None:
    assert resolve(base, padding + case(prefix) + rest) is None


@settings(max_examples=100, deadline=None)
@given(PATHS.filter(lambda path: not re.sub("[\t\n\r]", "", path).startswith("//")), QUERIES)
def test_resolve_against_a_page_stays_on_its_host(path: str, query: str) -> None:
    resolved = resolve(PAGE, path + query)
    assert resolved is not None, path + query
    assert host_of(resolved) == "example.org"


# -- remove_dot_segments --------------------------------------------------------------


def rfc_remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, step by step on an input and an output buffer."""
    source, output = path, ""
    while source:
        if source.startswith("../"):
            source = source[3:]
        elif source.startswith(("./", "/./")):
            source = source[2:]
        elif source == "/.":
            source = "/"
        elif source.startswith("/../") or source == "/..":
            source = "/" + source[4:]
            output = output[: max(output.rfind("/"), 0)]
        elif source in (".", ".."):
            source = ""
        else:
            end = source.find("/", 1)
            end = len(source) if end == -1 else end
            output, source = output + source[:end], source[end:]
    return output


DOT_PATHS = st.lists(
    st.one_of(st.sampled_from([".", "..", "", "a", "b.", ".c", "..."]), st.text(max_size=4)),
    max_size=10,
).map("/".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(DOT_PATHS, st.text()))
def test_remove_dot_segments_leaves_no_dot_segment(path: str) -> None:
    result = remove_dot_segments(path)
    assert not {".", ".."} & set(result.split("/")), result
    if path.startswith("/"):
        assert result.startswith("/"), result
    assert remove_dot_segments(result) == result


@settings(max_examples=200, deadline=None)
@given(DOT_PATHS.map(lambda path: "/" + path))
@example("/a//../b")
@example("/a/..//b")
def test_remove_dot_segments_follows_the_rfc_on_absolute_paths(path: str) -> None:
    # Only absolute paths reach it from normalize and join_reference with an http(s)
    # authority; on relative ones ("a/..//b") it gives "/b" where the RFC gives "//b".
    assert remove_dot_segments(path) == rfc_remove_dot_segments(path)


# -- host_dir -------------------------------------------------------------------------

HOST_DIR_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def assert_safe_folder(name: str) -> None:
    assert name not in ("", ".", ".."), name
    assert set(name) <= HOST_DIR_CHARS, name
    out = Path("/srv/out")
    assert (out / name).resolve().parent == out


@settings(max_examples=150, deadline=None)
@given(ANY_URL)
@example("http://[::1%Ä]/")
def test_host_dir_of_anything_is_one_safe_folder_or_refused(url: str) -> None:
    # Only normalized URLs reach it; urlsplit refuses some other strings ("A://[").
    try:
        name = host_dir(url)
    except ValueError:
        assert not normalize(url), url
        return
    assert_safe_folder(name)


@settings(max_examples=150, deadline=None)
@given(urlish())
def test_host_dir_of_a_normalized_url_names_its_host(url: str) -> None:
    normalized = normalize(url)
    if normalized is None:
        return
    name = host_dir(normalized)
    assert_safe_folder(name)
    assert ".." not in name and "/" not in name, name  # hosts have no empty label
    assert name != "unknown" or urlsplit(normalized).hostname == "unknown"
    port = urlsplit(normalized).port
    assert name.endswith(f"_{port}") == (port is not None), (normalized, name)
