"""Reading sitemap files: indexes, gzip, the image extension, text sitemaps, bounds,
and hostile XML."""

from __future__ import annotations

import gzip

import pytest

from crawler.web import sitemaps
from crawler.web.sitemaps import NotASitemap, parse_sitemap

BASE = "http://a.test/maps/s.xml"
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
IMAGE_NS = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'


def test_an_index_lists_sitemaps_resolved_against_its_url():
    body = (
        f"<sitemapindex {NS}><sitemap><loc>other.xml.gz</loc></sitemap>"
        "<sitemap><loc> http://b.test/x.xml </loc><lastmod>2026-01-01</lastmod></sitemap>"
        "<sitemap><loc>mailto:x@y</loc></sitemap></sitemapindex>"
    ).encode()
    content = parse_sitemap(body, BASE)
    assert content.sitemaps == ["http://a.test/maps/other.xml.gz", "http://b.test/x.xml"]
    assert content.pages == content.images == []


def test_a_gzip_urlset_gives_pages_and_their_images():
    body = (
        f'<?xml version="1.0"?><urlset {NS} {IMAGE_NS}>'
        "<url><loc>/p1.html</loc><image:image><image:loc>/i1.png</image:loc></image:image>"
        "<image:image><image:loc>http://cdn.test/i2.jpg</image:loc></image:image></url>"
        "<!-- a comment --><url><loc>/p2.html</loc><changefreq>daily</changefreq></url>"
        "</urlset>"
    ).encode()
    content = parse_sitemap(gzip.compress(body), BASE)
    assert content.pages == ["http://a.test/p1.html", "http://a.test/p2.html"]
    assert content.images == [
        ("http://a.test/i1.png", "http://a.test/p1.html"),
        ("http://cdn.test/i2.jpg", "http://a.test/p1.html"),
    ]
    assert not content.cut_short


def test_a_sitemap_without_its_namespace_and_a_text_sitemap_are_read_too():
    assert parse_sitemap(b"<urlset><url><loc>/x</loc></url></urlset>", BASE).pages == [
        "http://a.test/x"
    ]
    text = b"http://a.test/t1\n\n  /t2  \nftp://a.test/no\n"
    assert parse_sitemap(text, BASE).pages == ["http://a.test/t1", "http://a.test/t2"]


def test_entities_and_external_references_are_never_expanded():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">'
        b'<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<urlset><url><loc>&x;</loc></url><url><loc>&b;</loc></url>"
        b"<url><loc>/fine</loc></url></urlset>"
    )
    assert parse_sitemap(body, BASE).pages == ["http://a.test/fine"]


def test_entries_and_bytes_are_bounded(monkeypatch):
    monkeypatch.setattr(sitemaps, "MAX_SITEMAP_URLS", 3)
    body = "\n".join(f"/p{n}" for n in range(10)).encode()
    content = parse_sitemap(body, BASE)
    assert len(content.pages) == 3 and content.cut_short
    bomb = gzip.compress(b"/p\n" * 2_000_000)  # 6 MB from a few KB
    data, cut = sitemaps.ungzip(bomb, limit=1000)
    assert len(data) == 1000 and cut


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>not found</body></html>", "neither <urlset> nor <sitemapindex>"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_what_is_not_a_sitemap_says_why(body, message):
    with pytest.raises(NotASitemap, match=message):
        parse_sitemap(body, BASE)
