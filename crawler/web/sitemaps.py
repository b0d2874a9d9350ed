"""Sitemaps: the pages (and, with Google's image extension, the images) a site lists.

``parse_sitemap`` reads one sitemap file (pure): a ``<urlset>`` gives page URLs and
their ``<image:loc>`` images, a ``<sitemapindex>`` more sitemaps, a text sitemap one
URL per line; gzip is undone first. Bounded: ``MAX_SITEMAP_BYTES`` decompressed and
``MAX_SITEMAP_URLS`` entries per file (the protocol's own limits), XML without
entities, DTDs or network. Why not a library: ultimate-sitemap-parser, the
maintained one, fetches the files itself, past the crawl's address policy, robots.txt
and politeness; the reading is thirty lines of lxml.

``pages.fetch_sitemap`` GETs one through the page path (address policy, CA bundle,
cookies and headers, robots.txt).
"""

from __future__ import annotations

import codecs
import zlib
from dataclasses import dataclass, field

from lxml import etree

from crawler.urls import normalize, resolve

MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the protocol's limit, uncompressed
MAX_SITEMAP_URLS = 50_000
GZIP_MAGIC = b"\x1f\x8b"
_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"


class NotASitemap(ValueError):
    """The body is not a sitemap we can read (the message says why)."""


@dataclass
class SitemapContent:
    pages: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (image, its page)
    sitemaps: list[str] = field(default_factory=list)  # of a sitemap index
    cut_short: bool = False  # more entries than MAX_SITEMAP_URLS, or too large


def ungzip(body: bytes, limit: int = MAX_SITEMAP_BYTES) -> tuple[bytes, bool]:
    """The body, gunzipped when it is gzip, at most ``limit`` bytes; and whether it was
    cut there (or after its first gzip member, when more follow: they are not read)."""
    if not body.startswith(GZIP_MAGIC):
        return body[:limit], len(body) > limit
    decoder = zlib.decompressobj(wbits=47)
    try:
        data = decoder.decompress(body, limit)
    except zlib.error as exc:
        raise NotASitemap(f"corrupt gzip: {exc}") from None
    if not decoder.eof and not decoder.unconsumed_tail:
        raise NotASitemap("corrupt gzip: cut short")
    return data, bool(decoder.unconsumed_tail) or decoder.unused_data.startswith(GZIP_MAGIC)


def parse_sitemap(body: bytes, url: str) -> SitemapContent:
    """What one sitemap file lists, its URLs resolved against ``url`` and normalized
    (those that are not http(s) left out). Raises ``NotASitemap``."""
    data, cut = ungzip(body)
    data = data.removeprefix(codecs.BOM_UTF8)  # else "\ufeff<urlset" reads as a text sitemap
    content = SitemapContent(cut_short=cut)
    head = data.lstrip()[:1]
    if head != b"<":
        return _text_sitemap(data, url, content)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise NotASitemap(f"not XML: {exc}") from None
    if root is None:
        raise NotASitemap("not XML")
    kind = root.tag.rpartition("}")[2]  # etree.QName refuses the tags recover=True keeps
    if kind == "sitemapindex":
        for loc in root.iter(f"{{{_SITEMAP_NS}}}loc", "loc"):
            _add(content.sitemaps, loc.text, url, content)
    elif kind == "urlset":
        for entry in root.iter(f"{{{_SITEMAP_NS}}}url", "url"):
            page = _first_loc(entry, url)
            if page is not None and _room(content):
                content.pages.append(page)
            for image in entry.iter(f"{{{_IMAGE_NS}}}loc"):
                image_url = _resolved(image.text, url)
                if image_url is not None and _room(content):
                    content.images.append((image_url, page or url))
    else:
        raise NotASitemap(f"<{kind}> is neither <urlset> nor <sitemapindex>")
    return content


def _first_loc(entry: etree._Element, base: str) -> str | None:
    for loc in entry:  # (comments and the like too; recover=True keeps tags like "a:")
        if loc.tag in (f"{{{_SITEMAP_NS}}}loc", "loc"):
            return _resolved(loc.text, base)
    return None


def _text_sitemap(data: bytes, url: str, content: SitemapContent) -> SitemapContent:
    for line in data.decode("utf-8", errors="replace").splitlines():
        _add(content.pages, line, url, content)
    return content


def _add(found: list[str], text: str | None, base: str, content: SitemapContent) -> None:
    resolved = _resolved(text, base)
    if resolved is not None and _room(content):
        found.append(resolved)


def _room(content: SitemapContent) -> bool:
    if len(content.pages) + len(content.images) + len(content.sitemaps) < MAX_SITEMAP_URLS:
        return True
    content.cut_short = True
    return False


def _resolved(text: str | None, base: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    absolute = resolve(base, text)
    return normalize(absolute) if absolute else None
