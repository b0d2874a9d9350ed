"""Tests for crawler.urls: normalization, resolution and safe host folder names."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.urls import (
    host_dir,
    host_of,
    join_reference,
    looks_like_image,
    normalize,
    referer_for,
    remove_dot_segments,
    resolve,
)

PAGE = "http://example.org/gallery/index.html?page=2"


# -- normalize -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.ORG/Path/A.JPG", "http://example.org/Path/A.JPG"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("http://example.org:443/a", "http://example.org:443/a"),
        ("https://example.org:80/a", "https://example.org:80/a"),
        ("http://example.org:8080/a", "http://example.org:8080/a"),
        ("http://example.org/a#section", "http://example.org/a"),
        ("http://example.org", "http://example.org/"),
        ("http://example.org?q=1", "http://example.org/?q=1"),
        ("http://example.org/a?", "http://example.org/a"),
        ("  http://example.org/a \n", "http://example.org/a"),
        ("http://example.org/my photo.jpg", "http://example.org/my%20photo.jpg"),
        ("http://example.org/a.jpg?name=my photo", "http://example.org/a.jpg?name=my%20photo"),
        ("http://example.org/caf%C3%A9.jpg", "http://example.org/caf%C3%A9.jpg"),
        ("http://example.org/café.jpg", "http://example.org/caf%C3%A9.jpg"),
        ("http://example.org/图片.png", "http://example.org/%E5%9B%BE%E7%89%87.png"),
        ("http://example.org/a.jpg?w=100&h=50", "http://example.org/a.jpg?w=100&h=50"),
        ("http://bücher.example/a", "http://xn--bcher-kva.example/a"),
        ("http://BÜCHER.example/a", "http://xn--bcher-kva.example/a"),
        # "EXAMPLE" in full-width letters, which IDNA maps to ASCII
        ("http://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.org/a", "http://example.org/a"),
        ("http://under_score.example/a", "http://under_score.example/a"),
        ("http://user:secret@example.org/a", "http://example.org/a"),
        ("http://[::1]:5599/a", "http://[::1]:5599/a"),
        ("http://127.0.0.1:8000/a", "http://127.0.0.1:8000/a"),
        # one spelling per URL: escapes upper-cased, dot segments gone, empty segments kept
        ("http://example.org/a%2fb%c3%a9.jpg?x=%2f", "http://example.org/a%2Fb%C3%A9.jpg?x=%2F"),
        ("http://example.org/a/./b/../c.jpg", "http://example.org/a/c.jpg"),
        ("http://example.org/../a.jpg", "http://example.org/a.jpg"),
        ("http://example.org/a//b.jpg", "http://example.org/a//b.jpg"),
        ("http://example.org//a.jpg", "http://example.org//a.jpg"),
        ("http://example.org/a?q=./..", "http://example.org/a?q=./.."),
        ("http://example.org/100%", "http://example.org/100%"),
        # a browser deletes tabs and newlines anywhere in a URL
        ("http://exam\nple.org/a\t.jpg", "http://example.org/a.jpg"),
    ],
)
def test_normalize(url: str, expected: str):
    assert normalize(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/A b.jpg#x",
        "http://bücher.example:8080/straße.png?q=ä",
        "https://[::1]/a",
    ],
)
def test_normalize_is_idempotent(url: str):
    once = normalize(url)
    assert once is not None
    assert normalize(once) == once


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/a.jpg",
        "file:///etc/passwd",
        "mailto:someone@example.org",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "example.org/a.jpg",
        "/a.jpg",
        "",
        "http://",
        "http:///a.jpg",
        "http://example.org:99999/a",
        "http://example.org:http/a",
        "http://[not-ipv6]/a",
        "http://a..example/",
        "http://.hidden/",
        "http://exa mple.org/a",
        "http://exa<mple>.org/a",
        "http://a^b.example/",
        "http://a|b.example/",
        "http://a%20b.example/",
        "http://a\x00b.example/",
        "http://\uff41\uff1cb.example/",  # full-width "a<" maps to "a<" under IDNA
    ],
)
def test_normalize_rejects_what_we_do_not_fetch(url: str):
    assert normalize(url) is None


# -- resolve -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("photo.jpg", "http://example.org/gallery/photo.jpg"),
        ("./photo.jpg", "http://example.org/gallery/photo.jpg"),
        ("../photo.jpg", "http://example.org/photo.jpg"),
        ("/img/photo.jpg", "http://example.org/img/photo.jpg"),
        ("//cdn.example.net/photo.jpg", "http://cdn.example.net/photo.jpg"),
        ("https://cdn.example.net/photo.jpg", "https://cdn.example.net/photo.jpg"),
        ("?page=3", "http://example.org/gallery/index.html?page=3"),
        ("  photo.jpg  ", "http://example.org/gallery/photo.jpg"),
        ("my photo.jpg#zoom", "http://example.org/gallery/my%20photo.jpg"),
    ],
)
def test_resolve(reference: str, expected: str):
    assert resolve(PAGE, reference) == expected


def test_resolve_keeps_empty_path_segments():
    # Python 3.11's urljoin would give http://h/a/images/x.png; a browser keeps the "//".
    assert resolve("http://h/a/", "images//x.png") == "http://h/a/images//x.png"
    assert resolve("http://h/a/b", "..//x.png") == "http://h//x.png"


def test_resolve_deletes_tabs_and_newlines_like_a_browser():
    assert resolve(PAGE, "ph\noto\t.jpg") == "http://example.org/gallery/photo.jpg"
    assert resolve(PAGE, "java\nscript:alert(1)") is None


def test_resolve_protocol_relative_keeps_the_page_scheme():
    assert resolve("https://example.org/", "//cdn.example.net/a.png") == (
        "https://cdn.example.net/a.png"
    )


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "   ",
        "#",
        "#top",
        "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
        "DATA:image/gif;base64,R0lGODlhAQABAAAAACw=",
        "javascript:void(0)",
        "JavaScript:void(0)",
        "mailto:someone@example.org",
        "tel:+123456",
        "ftp://example.org/a.jpg",
    ],
)
def test_resolve_skips_references_that_are_not_pages_or_images(reference: str):
    assert resolve(PAGE, reference) is None


# -- join_reference: RFC 3986 section 5.4 -------------------------------------------

RFC_BASE = "http://a/b/c/d;p?q"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        # 5.4.1 normal examples
        ("g:h", "g:h"),
        ("g", "http://a/b/c/g"),
        ("./g", "http://a/b/c/g"),
        ("g/", "http://a/b/c/g/"),
        ("/g", "http://a/g"),
        ("//g", "http://g"),
        ("?y", "http://a/b/c/d;p?y"),
        ("g?y", "http://a/b/c/g?y"),
        ("#s", "http://a/b/c/d;p?q#s"),
        ("g#s", "http://a/b/c/g#s"),
        ("g?y#s", "http://a/b/c/g?y#s"),
        (";x", "http://a/b/c/;x"),
        ("g;x", "http://a/b/c/g;x"),
        ("g;x?y#s", "http://a/b/c/g;x?y#s"),
        ("", "http://a/b/c/d;p?q"),
        (".", "http://a/b/c/"),
        ("./", "http://a/b/c/"),
        ("..", "http://a/b/"),
        ("../", "http://a/b/"),
        ("../g", "http://a/b/g"),
        ("../..", "http://a/"),
        ("../../", "http://a/"),
        ("../../g", "http://a/g"),
        # 5.4.2 abnormal examples
        ("../../../g", "http://a/g"),
        ("../../../../g", "http://a/g"),
        ("/./g", "http://a/g"),
        ("/../g", "http://a/g"),
        ("g.", "http://a/b/c/g."),
        (".g", "http://a/b/c/.g"),
        ("g..", "http://a/b/c/g.."),
        ("..g", "http://a/b/c/..g"),
        ("./../g", "http://a/b/g"),
        ("./g/.", "http://a/b/c/g/"),
        ("g/./h", "http://a/b/c/g/h"),
        ("g/../h", "http://a/b/c/h"),
        ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
        ("g;x=1/../y", "http://a/b/c/y"),
        ("g?y/./x", "http://a/b/c/g?y/./x"),
        ("g?y/../x", "http://a/b/c/g?y/../x"),
        ("g#s/./x", "http://a/b/c/g#s/./x"),
        ("g#s/../x", "http://a/b/c/g#s/../x"),
        # the RFC's backward-compatible reading, which browsers follow for http(s)
        ("http:g", "http://a/b/c/g"),
        # empty path segments survive, unlike with urllib.parse.urljoin
        ("g//h", "http://a/b/c/g//h"),
        ("..//g", "http://a/b//g"),
        ("//g/./x/../y", "http://g/y"),
    ],
)
def test_join_reference_follows_rfc_3986(reference: str, expected: str):
    assert join_reference(RFC_BASE, reference) == expected


def test_join_reference_against_a_base_without_a_path():
    assert join_reference("http://a", "g") == "http://a/g"
    assert join_reference("http://a?q", "") == "http://a?q"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/a//../b", "/a/b"),
        ("/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a.b/c..d/", "/a.b/c..d/"),
    ],
)
def test_remove_dot_segments(path: str, expected: str):
    assert remove_dot_segments(path) == expected


# -- host_of ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.org/a", "example.org"),
        ("http://example.org:8080/a", "example.org:8080"),
        ("http://[::1]:5599/a", "[::1]:5599"),
    ],
)
def test_host_of(url: str, expected: str):
    assert host_of(url) == expected


# -- looks_like_image ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/a.jpg",
        "http://example.org/a.JPEG",
        "http://example.org/dir/a.b.png",
        "http://example.org/a.gif?x=1",
        "http://example.org/a.webp",
        "http://example.org/a.avif",
        "http://example.org/a.svg",
        "http://example.org/favicon.ico",
        "http://example.org/scan.tiff",
    ],
)
def test_looks_like_image(url: str):
    assert looks_like_image(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",
        "http://example.org/page.html",
        "http://example.org/images.jpg/",
        "http://example.org/images.d/photo",
        "http://example.org/page?file=a.jpg",
        "http://example.org/page#a.jpg",
        "http://example.org/jpg",
    ],
)
def test_does_not_look_like_image(url: str):
    assert not looks_like_image(url)


# -- host_dir ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.org/a.jpg", "example.org"),
        ("https://EXAMPLE.org/a.jpg", "example.org"),
        ("http://127.0.0.1:8000/a.jpg", "127.0.0.1_8000"),
        ("https://example.org:443/a.jpg", "example.org"),
        ("http://example.org:443/a.jpg", "example.org_443"),
        ("http://[::1]:8000/a.jpg", "--1_8000"),
        ("http://xn--bcher-kva.example/a.jpg", "xn--bcher-kva.example"),
    ],
)
def test_host_dir(url: str, expected: str):
    assert host_dir(url) == expected


HOSTILE_URLS = [
    "http://../a.jpg",
    "http://./a.jpg",
    "http://.../a.jpg",
    "http://..:8000/a.jpg",
    "http://../../etc/passwd",
    "http://%2e%2e/a.jpg",
    "http://a%2F..%2F..%2Fb/a.jpg",
    "http://a\\..\\..\\b/a.jpg",
    "http://a/../../b/a.jpg",
    "http://user@../a.jpg",
    "http://a\x00b/a.jpg",
    "http://ä/a.jpg",
    "http://[::1]/a.jpg",
    "http://example.org:99999/a.jpg",
    "http://example.org:notaport/a.jpg",
    "",
    "/relative/a.jpg",
    "not a url at all",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_host_dir_is_one_safe_path_component(url: str):
    name = host_dir(url)
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-_")
    out = Path("/srv/out")
    assert (out / name).resolve().parent == out.resolve()


def test_host_dir_of_dot_hosts_is_unknown():
    assert host_dir("http://../a.jpg") == "unknown"
    assert host_dir("http://./a.jpg") == "unknown"


@pytest.mark.parametrize(
    ("page", "target", "policy", "referer"),
    [
        (
            "http://a.test/g/p.html?x=1#top",
            "http://cdn.test/i.png",
            "page",
            "http://a.test/g/p.html?x=1",
        ),
        ("http://a.test:8080/g/p.html", "http://cdn.test/i.png", "origin", "http://a.test:8080/"),
        ("http://a.test/p.html", "http://cdn.test/i.png", "none", None),
        ("https://a.test/p.html", "https://cdn.test/i.png", "page", "https://a.test/p.html"),
        ("https://a.test/p.html", "http://cdn.test/i.png", "page", None),  # no downgrade
        ("https://a.test/p.html", "HTTP://cdn.test/i.png", "origin", None),
        ("http://a.test/p.html", "https://cdn.test/i.png", "page", "http://a.test/p.html"),
        ("http://user:secret@a.test/p.html", "http://a.test/i.png", "page", "http://a.test/p.html"),
        ("http://a.test", "http://a.test/i.png", "page", "http://a.test/"),
        ("", "http://a.test/i.png", "page", None),  # a seed
        (None, "http://a.test/i.png", "origin", None),
        ("ftp://a.test/p", "http://a.test/i.png", "page", None),
    ],
)
def test_the_referer_of_a_request(page, target, policy, referer):
    assert referer_for(page, target, policy) == referer
