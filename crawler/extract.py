"""HTML bytes + page URL -> image references and page links. Pure: no I/O.

Each image reference is tagged with the kind of markup it came from, so that the
manifest can say why an image was fetched and tests can check each kind.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

from crawler.urls import looks_like_image, resolve

# Attributes lazy-loading libraries use to hold the real image URL.
LAZY_SRC_ATTRIBUTES = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
LAZY_SRCSET_ATTRIBUTES = ("data-srcset", "data-lazy-srcset")
_WHITESPACE = " \t\n\r\f"


@dataclass(frozen=True)
class ImageRef:
    url: str
    kind: str


@dataclass
class PageContent:
    images: list[ImageRef] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


def parse_srcset(value: str) -> list[str]:
    """URLs of every candidate in a ``srcset``, following the HTML spec's tokenizer.

    URLs may contain commas (only a trailing comma ends a bare URL), descriptors may
    contain parentheses, and whitespace between candidates is arbitrary.
    """
    urls: list[str] = []
    position, length = 0, len(value)
    while position < length:
        while position < length and (value[position] in _WHITESPACE or value[position] == ","):
            position += 1
        start = position
        while position < length and value[position] not in _WHITESPACE:
            position += 1
        url = value[start:position]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            in_parens = False
            while position < length:
                char = value[position]
                position += 1
                if in_parens:
                    in_parens = char != ")"
                elif char == "(":
                    in_parens = True
                elif char == ",":
                    break
        if url:
            urls.append(url)
    return urls


def charset_from_content_type(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type header, if any."""
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def extract_page(html: bytes, page_url: str, content_type: str | None = None) -> PageContent:
    """Find the images a page shows and the pages it links to.

    Image URLs are resolved against ``<base href>`` (or the page URL), normalized and
    de-duplicated in document order; the first kind seen for a URL wins.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(html, "lxml", from_encoding=charset_from_content_type(content_type))
    base = page_url
    base_tag = soup.find("base", href=True)
    if base_tag is not None:
        base = resolve(page_url, base_tag["href"]) or page_url

    content = PageContent()
    seen_images: set[str] = set()
    seen_links: set[str] = set()

    def add_image(reference: str, kind: str) -> None:
        url = resolve(base, reference)
        if url is not None and url not in seen_images:
            seen_images.add(url)
            content.images.append(ImageRef(url, kind))

    for tag in soup.find_all(True):
        name = tag.name
        if name == "img":
            if tag.get("src"):
                add_image(tag["src"], "img_src")
            for candidate in parse_srcset(tag.get("srcset", "")):
                add_image(candidate, "srcset")
        elif name == "source" and tag.get("srcset"):
            # lxml does not treat <source> as void: a following <source> or <img> ends up
            # nested inside it, so we visit every <source> in the document instead of
            # walking a <picture>'s children.
            for candidate in parse_srcset(tag["srcset"]):
                add_image(candidate, "picture")
        elif name in ("a", "area") and tag.get("href"):
            url = resolve(base, tag["href"])
            if url is None:
                continue
            if looks_like_image(url):
                add_image(url, "link")
            elif url not in seen_links:
                seen_links.add(url)
                content.links.append(url)
        for attribute in LAZY_SRC_ATTRIBUTES:
            if tag.get(attribute):
                add_image(tag[attribute], "lazy")
        for attribute in LAZY_SRCSET_ATTRIBUTES:
            for candidate in parse_srcset(tag.get(attribute, "")):
                add_image(candidate, "lazy")
    return content
