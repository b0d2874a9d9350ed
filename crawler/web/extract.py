"""HTML bytes + page URL -> image references and page links. Pure: no I/O.

Each image reference is tagged with the kind of markup it came from, so that the
manifest can say why an image was fetched and tests can check each kind:
``img_src``, ``srcset``, ``picture``, ``lazy``, ``link``, ``input``, ``poster``,
``svg_image`` (also ``<use>`` of an external sprite), ``icon``, ``preload``
(``<link rel=preload as=image>``), ``background`` (the legacy attribute), ``meta``,
``frame`` and ``object`` (an image shown in a
frame, ``<object>`` or ``<embed>``), and ``css`` (inline ``style`` attributes and
``<style>`` blocks). Linked style sheets are listed for ``pages.py`` to fetch
(kind ``stylesheet``): this module does no I/O.

Page links come from ``<a>``, ``<area>``, ``<frame>`` and ``<iframe>``. Links a page
marks ``rel=nofollow`` (or all of them, under ``<meta name=robots content=nofollow>``)
are kept apart in ``nofollow_links``, for the harvester to follow or not as configured.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

from crawler.compat.bs4 import parse_kept
from crawler.render.hints import SCRIPT_CHARS_READ, Script, script_hints
from crawler.urls import looks_like_image, resolve
from crawler.web.css import (
    import_urls,
    may_hold_images,
    style_attribute_image_urls,
    stylesheet_image_rules,
)
from crawler.web.optout import meta_opt_out
from crawler.web.selectors import (
    ImageRule,
    PageTokens,
    applied_rules,
    image_rule,
    match_selectors,
    media_applies,
    page_tokens,
)

if TYPE_CHECKING:
    from crawler.web.describe import PageDescription

# Attributes lazy-loading libraries use to hold the real image URL.
LAZY_SRC_ATTRIBUTES = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
LAZY_SRCSET_ATTRIBUTES = ("data-srcset", "data-lazy-srcset")
_LAZY_SRC_SET = frozenset(LAZY_SRC_ATTRIBUTES)
_LAZY_SRCSET_SET = frozenset(LAZY_SRCSET_ATTRIBUTES)
# <link rel> tokens (case-insensitive) whose href is an icon; "shortcut icon" has "icon".
ICON_RELS = frozenset({"icon", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon"})
# <meta property|name> values whose content is the page's preview image.
META_IMAGE_NAMES = frozenset(
    {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}
)
_WHITESPACE = " \t\n\r\f"

# WHATWG Encoding: a browser decodes every one of these labels as windows-1252.
_WINDOWS_1252_LABELS = frozenset(
    {
        "ansi_x3.4-1968",
        "ascii",
        "cp1252",
        "cp819",
        "csisolatin1",
        "ibm819",
        "iso-8859-1",
        "iso-ir-100",
        "iso8859-1",
        "iso88591",
        "iso_8859-1",
        "l1",
        "latin1",
        "us-ascii",
        "windows-1252",
        "x-cp1252",
    }
)
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Browsers prescan the first 1024 bytes, then still switch encoding when the parser meets
# a later <meta charset> in <head>; scanning a generous prefix approximates both.
_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([-\w.:]+)", re.I)
_META_PRESCAN_BYTES = 16384


@dataclass(frozen=True)
class ImageRef:
    url: str
    kind: str


@dataclass
class PageContent:
    images: list[ImageRef] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)  # applied ones, to fetch
    nofollow_links: list[str] = field(default_factory=list)  # only ever seen as nofollow
    tokens: PageTokens = field(default_factory=lambda: page_tokens((), (), ()))
    # Why its scripts look like they build images or links (``render.hints``), or ().
    script_hints: tuple[str, ...] = ()
    # What the page says of its images (``describe``), when asked for.
    description: PageDescription | None = None
    # The page opts out of AI use in a <meta> (``web.optout.meta_opt_out``).
    opt_out: str | None = None


def parse_srcset(value: str) -> list[str]:
    """URLs of every candidate in a ``srcset`` (``srcset_candidates``)."""
    return [url for url, _ in srcset_candidates(value)]


def srcset_candidates(value: str) -> list[tuple[str, str]]:
    """``(url, descriptor)`` of every candidate in a ``srcset``, following the HTML
    spec's tokenizer; the descriptor is as written, whitespace collapsed (``"640w"``,
    ``"2x"``, ``""`` for none).

    URLs may contain commas (only a trailing comma ends a bare URL), descriptors may
    contain parentheses, and whitespace between candidates is arbitrary.
    """
    candidates: list[tuple[str, str]] = []
    position, length = 0, len(value)
    while position < length:
        while position < length and (value[position] in _WHITESPACE or value[position] == ","):
            position += 1
        start = position
        while position < length and value[position] not in _WHITESPACE:
            position += 1
        url = value[start:position]
        described = position
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
            descriptor = value[described:position].rstrip(",") if described < position else ""
            candidates.append((url, " ".join(descriptor.split())))
    return candidates


def charset_from_content_type(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type header, if any."""
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def decode_html(html: bytes, content_type: str | None = None) -> str:
    """The text a browser reads from the bytes of a page (see ``page_encoding``)."""
    codec, start = page_encoding(html, content_type)
    return html[start:].decode(codec, errors="replace")


def page_encoding(html: bytes, content_type: str | None = None) -> tuple[str, int]:
    """The codec a browser decodes a page with, and where the text starts (after a BOM).

    The encoding comes from, in order: a byte order mark, the Content-Type charset, a
    ``<meta>`` charset, UTF-8 when the bytes are valid UTF-8, else windows-1252 (the
    usual browser default). Latin-1 and ASCII labels mean windows-1252, as in browsers.
    """
    for mark, codec in _BYTE_ORDER_MARKS:
        if html.startswith(mark):
            return codec, len(mark)
    codec = _codec_for(charset_from_content_type(content_type))
    if codec is None:
        match = _META_CHARSET.search(html, 0, _META_PRESCAN_BYTES)
        codec = _codec_for(match.group(1).decode("ascii") if match else None)
        if codec is not None and codec.startswith("utf-16"):
            codec = "utf-8"  # the <meta> was readable as ASCII, so the page is not UTF-16
    if codec is None:
        try:
            html.decode("utf-8")
            codec = "utf-8"
        except UnicodeDecodeError:
            codec = "cp1252"
    return codec, 0


def url_query_encoding(codec: str) -> str:
    """WHATWG URL: a page's URLs encode their query in the page's encoding, except that
    UTF-16 pages use UTF-8."""
    return "utf-8" if codec.startswith("utf-16") or codec == "utf-8" else codec


def _codec_for(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    if label in _WINDOWS_1252_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def extract_page(
    html: bytes,
    page_url: str,
    content_type: str | None = None,
    describe: bool = False,
    largest: bool = False,
) -> PageContent:
    """Find the images a page shows and the pages it links to.

    Image URLs are resolved against ``<base href>`` (or the page URL), normalized and
    de-duplicated in document order; the first kind seen for a URL wins. The images of
    the page's ``<style>`` rules come last, those of rules whose selector matches an
    element (``selectors``); linked style sheets are ``pages.py``'s.

    ``describe``: also what the page says of each image (``describe.describe_page``,
    a second, whole parse). ``largest``: of the candidates of one ``<img srcset>`` or
    ``<picture>`` only the largest is kept (its variants are left in the description's
    ``alternatives``).
    """
    codec, start = page_encoding(html, content_type)
    text = html[start:].decode(codec, errors="replace")
    elements, tokens = _parse(text)
    collector = _collect(elements, page_url, url_query_encoding(codec))
    content = collector.finish()
    content.tokens = tokens
    content.script_hints = script_hints(
        collector.scripts,
        (name[1:] for name in tokens.names if name[:1] == "#"),
        len(content.images),
        len(content.links),
    )
    # The page's own <style> rules show their images where they match an element.
    rules = [rule for rule in collector.style_rules if not set(rule.urls) <= collector.seen_images]
    for rule in applied_rules(rules, tokens, lambda selectors: match_selectors(text, selectors)):
        for url in rule.urls:
            collector.add_image(url, "css")
    if describe or largest:
        from crawler.web.describe import describe_page  # (it imports this module)

        description = describe_page(text, page_url, url_query_encoding(codec))
        content.description = description
        if largest and description.alternatives:
            variants = description.alternatives
            content.images = [
                ref
                for ref in content.images
                if ref.url not in variants or ref.kind not in VARIANT_KINDS
            ]
    return content


# Kinds of reference ``largest`` may leave out: the candidates of a picture.
VARIANT_KINDS = frozenset({"img_src", "srcset", "picture", "lazy"})


def match_page_selectors(html: bytes, content_type: str | None, selectors: list[str]) -> list[bool]:
    """``selectors.match_selectors`` on a page as served (decoded as ``extract_page``
    decodes it): which of ``selectors`` match one of its elements."""
    codec, start = page_encoding(html, content_type)
    return match_selectors(html[start:].decode(codec, errors="replace"), selectors)


def _collect(elements: list[_Element], page_url: str, query_encoding: str) -> _Collector:
    """A collector that visited a page's elements, its URLs resolved against its
    ``<base href>``."""
    base = page_url
    for element in elements:
        if element.tag == "base" and element.get("href"):
            base = resolve(page_url, element.get("href"), query_encoding) or page_url
            break
    collector = _Collector(base, query_encoding)
    for element in elements:
        collector.visit(element)
    return collector


@dataclass
class _Element:
    tag: str
    attributes: dict[str, str]
    text: str = ""  # only kept for <style> and <script>

    def get(self, name: str, default: str = "") -> str:
        return self.attributes.get(name, default)


_LAZY_ATTRIBUTES = _LAZY_SRC_SET | _LAZY_SRCSET_SET
_TEXT_TAGS = frozenset({"style", "script"})  # the text of these is read
_INERT_TAGS = frozenset({"template"})


def _is_read(tag: str, attributes: Mapping[str, str]) -> bool:
    """Whether extraction can find anything in an element (``_Collector.visit``):
    ``_READ_TAGS`` always, ``_BACKGROUND_TAGS`` with a background attribute, and any
    element with a lazy-image attribute or a style that may hold an image."""
    if tag in _READ_TAGS:
        return True
    if not attributes:  # (lxml's empty mapping answers .get() through a KeyError)
        return False
    if tag in _BACKGROUND_TAGS and "background" in attributes:
        return True
    if not _LAZY_ATTRIBUTES.isdisjoint(attributes):
        return True
    style = attributes.get("style")
    return style is not None and may_hold_images(style)


def _elements(text: str) -> list[_Element]:
    """The elements of the page extraction reads, in document order (``_parse``)."""
    return _parse(text)[0]


def _parse(text: str) -> tuple[list[_Element], PageTokens]:
    """The elements of the page extraction reads, in document order, parsed by
    BeautifulSoup with lxml (``compat.bs4.parse_kept``: the soup holds only those), and
    the tag names, ids and classes of all its elements.

    A flat list: visiting does not depend on where the parser nested a tag (lxml nests
    tags after a ``<source>`` inside it, and parks what follows a stray ``</html>``).
    ``<template>`` content is inert (a browser shows none of it until a script copies
    it), so it is left out.
    """
    if not text.strip():
        return [], page_tokens((), (), ())
    soup, names = parse_kept(text.replace("\x00", "\ufffd"), _is_read, _TEXT_TAGS, _INERT_TAGS)
    elements = [
        _Element(tag.name, tag.attrs, tag.get_text() if tag.name in _TEXT_TAGS else "")
        for tag in soup.find_all(True)
    ]
    return elements, page_tokens(names.tags, names.ids, names.classes)


class _Collector:
    """Accumulates one page's images and links while visiting its elements in order."""

    # The method that reads each kind of element (beside the attributes ``visit`` reads
    # on every element).
    VISITORS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "img": "visit_img",
            "source": "visit_source",
            "input": "visit_input",
            "video": "visit_video",
            "image": "visit_svg_image",
            "link": "visit_link",
            "meta": "visit_meta",
            "a": "visit_anchor",
            "area": "visit_anchor",
            "frame": "visit_frame",
            "iframe": "visit_frame",
            "object": "visit_object",
            "embed": "visit_object",
            "style": "visit_style",
            "script": "visit_script",
            "use": "visit_svg_use",
            **dict.fromkeys(("table", "td", "th", "tr", "body"), "visit_background"),
        }
    )

    def __init__(self, base: str, query_encoding: str = "utf-8") -> None:
        self.base = base
        self.query_encoding = query_encoding
        self.content = PageContent()
        self.seen_images: set[str] = set()
        self.seen_links: set[str] = set()
        self.nofollow: dict[str, None] = {}  # ordered set
        self.page_nofollow = False
        self.style_rules: list[ImageRule] = []  # of <style> blocks, matched after the visit
        self.scripts: list[Script] = []  # for the render hints
        self.visitors: dict[str, Callable[[_Element], None]] = {
            tag: getattr(self, name) for tag, name in self.VISITORS.items()
        }

    def finish(self) -> PageContent:
        content = self.content
        nofollow = [url for url in self.nofollow if url not in self.seen_links]
        if self.page_nofollow:
            nofollow, content.links = content.links + nofollow, []
        content.nofollow_links = nofollow
        return content

    def resolve(self, reference: str) -> str | None:
        return resolve(self.base, reference, self.query_encoding)

    def add_image(self, reference: str | None, kind: str) -> None:
        url = self.resolve(reference) if reference else None
        if url is not None and url not in self.seen_images:
            self.seen_images.add(url)
            self.content.images.append(ImageRef(url, kind))

    def visit(self, element: _Element) -> None:
        visitor = self.visitors.get(element.tag)
        if visitor is not None:
            visitor(element)
        for name, value in element.attributes.items():
            if name == "style":
                for url in style_attribute_image_urls(value):
                    self.add_image(url, "css")
            elif name in _LAZY_SRC_SET:
                self.add_image(value, "lazy")
            elif name in _LAZY_SRCSET_SET:
                for candidate in parse_srcset(value):
                    self.add_image(candidate, "lazy")

    def visit_img(self, element: _Element) -> None:
        self.add_image(element.get("src"), "img_src")
        for candidate in parse_srcset(element.get("srcset", "")):
            self.add_image(candidate, "srcset")

    def visit_source(self, element: _Element) -> None:
        # lxml does not treat <source> as void: a following <source> or <img> ends up
        # nested inside it, so we visit every <source> in the document instead of
        # walking a <picture>'s children.
        for candidate in parse_srcset(element.get("srcset", "")):
            self.add_image(candidate, "picture")

    def visit_input(self, element: _Element) -> None:
        if element.get("type", "").strip().lower() == "image":
            self.add_image(element.get("src"), "input")

    def visit_video(self, element: _Element) -> None:
        self.add_image(element.get("poster"), "poster")

    def visit_svg_image(self, element: _Element) -> None:
        # SVG 2: href wins over the older xlink:href, which lxml keeps under that name.
        # <image src> outside SVG is an <img> to a browser's HTML parser.
        if element.get("href") or element.get("xlink:href"):
            self.add_image(element.get("href") or element.get("xlink:href"), "svg_image")
        else:
            self.add_image(element.get("src"), "img_src")

    def visit_svg_use(self, element: _Element) -> None:
        # <use href="sprite.svg#icon"> loads an external SVG; "#icon" is in the page.
        reference = element.get("href") or element.get("xlink:href")
        if reference and not reference.strip().startswith("#"):
            self.add_image(reference, "svg_image")

    def visit_background(self, element: _Element) -> None:
        # The legacy background attribute still paints an image in every browser.
        self.add_image(element.get("background"), "background")

    def visit_link(self, element: _Element) -> None:
        rels = element.get("rel", "").lower().split()
        if not ICON_RELS.isdisjoint(rels):
            self.add_image(element.get("href"), "icon")
        if "preload" in rels and element.get("as").strip().lower() == "image":
            self.add_image(element.get("href"), "preload")
            for candidate in parse_srcset(element.get("imagesrcset")):
                self.add_image(candidate, "preload")
        # Browsers do not apply "alternate stylesheet" until the user picks it, nor
        # media=print on a screen.
        if "stylesheet" in rels and "alternate" not in rels and media_applies(element.get("media")):
            url = self.resolve(element.get("href", ""))
            if url is not None and url not in self.content.stylesheets:
                self.content.stylesheets.append(url)

    def visit_meta(self, element: _Element) -> None:
        name = (element.get("property") or element.get("name") or "").strip().lower()
        if name in META_IMAGE_NAMES:
            self.add_image(element.get("content"), "meta")
        elif name == "robots":
            directives = {d.strip() for d in element.get("content").lower().split(",")}
            self.page_nofollow |= not directives.isdisjoint({"nofollow", "none"})
            self.content.opt_out = self.content.opt_out or meta_opt_out(
                name, element.get("content")
            )
        elif name == "tdm-reservation":
            self.content.opt_out = self.content.opt_out or meta_opt_out(
                name, element.get("content")
            )

    def visit_anchor(self, element: _Element) -> None:
        url = self.resolve(element.get("href", ""))
        if url is None:
            return
        if looks_like_image(url):
            self.add_image(url, "link")
        elif "nofollow" in element.get("rel", "").lower().split():
            self.nofollow.setdefault(url)
        else:
            self.add_link(url)

    def add_link(self, url: str) -> None:
        if url not in self.seen_links:
            self.seen_links.add(url)
            self.content.links.append(url)

    def visit_frame(self, element: _Element) -> None:
        # A browser shows the framed document, or the image itself when it is one.
        url = self.resolve(element.get("src", ""))
        if url is None:
            return
        if looks_like_image(url):
            self.add_image(url, "frame")
        else:
            self.add_link(url)

    def visit_object(self, element: _Element) -> None:
        # <object data> / <embed src> render an image when they point at one.
        reference = element.get("data") if element.tag == "object" else element.get("src")
        mime = element.get("type").strip().lower()
        url = self.resolve(reference) if reference else None
        if url is not None and (mime.startswith("image/") or looks_like_image(url)):
            self.add_image(url, "object")

    def visit_style(self, element: _Element) -> None:
        if not media_applies(element.get("media")):
            return
        for selector, references in stylesheet_image_rules(element.text or ""):
            urls = [url for url in map(self.resolve, references) if url is not None]
            if selector is None:  # shown whatever the page holds (@keyframes)
                for url in urls:
                    self.add_image(url, "css")
            elif urls:
                self.style_rules.append(image_rule(selector, urls))
        for reference in import_urls(element.text or ""):  # fetched like linked sheets
            url = self.resolve(reference)
            if url is not None and url not in self.content.stylesheets:
                self.content.stylesheets.append(url)

    def visit_script(self, element: _Element) -> None:
        kind = element.get("type").strip().lower()
        if kind.endswith("json") or len(self.scripts) >= MAX_SCRIPTS_READ:
            return  # data, not code (JSON-LD, a framework's state)
        src = element.get("src").strip()
        self.scripts.append(Script(src, "" if src else (element.text or "")[:SCRIPT_CHARS_READ]))


# A page's first scripts are read for the render hints, at most this many.
MAX_SCRIPTS_READ = 256

# From the visitors, so that a new one cannot be missed: elements whose visitor reads
# them whatever their attributes (and <base>, which extract_page reads), and those
# whose visitor reads only the legacy background attribute.
_BACKGROUND_TAGS = frozenset(
    tag for tag, name in _Collector.VISITORS.items() if name == "visit_background"
)
_READ_TAGS = frozenset(_Collector.VISITORS).difference(_BACKGROUND_TAGS) | {"base"}
