"""What a page says about each image it shows, and which candidates are variants of one
picture. Pure: HTML bytes + page URL in, ``PageDescription`` out.

For a dataset, each (image, page) reference carries the page's own words for it:
``alt`` and ``title`` (of the ``<img>``; for a ``<picture>`` source, of its ``<img>``),
``caption`` (the enclosing ``<figure>``'s ``<figcaption>``), ``context`` (the text
around the image in reading order, ``CONTEXT_CHARS`` each side, cut at words),
``lang`` (the nearest ``lang`` attribute), and the page's ``<title>``. Every text is
plain (no markup), whitespace collapsed and bounded (``MAX_TEXT``).

Variants: the candidates of one ``<img>`` (``src``, ``srcset`` and their lazy forms)
or of one ``<picture>`` (every ``<source>`` and its ``<img>``) show one picture. The
largest is the one with the largest width descriptor (``800w``); with none, the
largest density (``2x``; a bare URL is ``1x``); the first in document order on a tie.
A width beats any density: a density says nothing of pixels by itself.

This parses the whole page with BeautifulSoup (lxml), which ``extract`` avoids: it
runs only for dataset crawls and ``--variants largest`` (``extract_page(describe=)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from crawler.urls import looks_like_image, resolve
from crawler.web.extract import (
    LAZY_SRC_ATTRIBUTES,
    LAZY_SRCSET_ATTRIBUTES,
    srcset_candidates,
)

MAX_TEXT = 1000  # characters of any one text kept
CONTEXT_CHARS = 200  # characters of context each side of the image
MAX_LANG = 35  # a BCP 47 tag is shorter (RFC 5646 recommends 35)
# Elements whose text is not the page's words.
_UNREAD = frozenset({"script", "style", "noscript", "template", "title", "textarea"})
_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


@dataclass(frozen=True, slots=True)
class ImageText:
    """The page's words for one image (None where it has none)."""

    alt: str | None = None
    title: str | None = None
    caption: str | None = None
    context: str | None = None
    lang: str | None = None
    descriptor: str | None = None  # its srcset descriptor ("640w", "2x"), in a srcset
    picture: str | None = None  # the largest candidate of its <img>/<picture>, if several


@dataclass
class PageDescription:
    """One page's description: its title and language, the text of each image URL
    (its first reference on the page), and the candidates that are not the largest of
    their picture, each mapped to that largest one."""

    page_title: str | None = None
    lang: str | None = None
    images: dict[str, ImageText] = field(default_factory=dict)
    alternatives: dict[str, str] = field(default_factory=dict)


def clean_text(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Whitespace collapsed, at most ``limit`` characters (cut at a word when one
    ends near the limit); None for no text."""
    if not text:
        return None
    words = " ".join(text.split())
    if len(words) > limit:
        cut = words.rfind(" ", limit // 2, limit + 1)
        words = words[: cut if cut > 0 else limit]
    return words or None


def descriptor_size(descriptor: str) -> tuple[int, float]:
    """How a candidate ranks: ``(1, width)`` for a width descriptor, ``(0, density)``
    else (none is ``1x``; a descriptor that does not parse counts as ``1x``)."""
    width, density = None, 1.0
    for token in descriptor.split():
        number, unit = token[:-1], token[-1:].lower()
        try:
            if unit == "w" and number.isdigit():
                width = int(number)
            elif unit == "x":
                value = float(number)
                if value > 0 and value != float("inf"):
                    density = value
        except ValueError:
            continue
    return (1, width) if width is not None else (0, density)


def describe_page(text: str, page_url: str, query_encoding: str = "utf-8") -> PageDescription:
    """The description of a page's decoded ``text`` (see the module)."""
    description = PageDescription()
    if not text.strip():
        return description
    soup = BeautifulSoup(text.replace("\x00", "\ufffd"), "lxml")
    base = page_url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base = resolve(page_url, str(base_tag["href"]), query_encoding) or page_url
    title = soup.find("title")
    description.page_title = clean_text(title.get_text(" ") if title else None, MAX_TEXT)
    html = soup.find("html")
    description.lang = _lang_of(html) if isinstance(html, Tag) else None
    _Describer(description, base, query_encoding).run(soup)
    return description


def _lang_of(element: Tag) -> str | None:
    value = element.get("lang")
    return clean_text(value if isinstance(value, str) else None, MAX_LANG)


class _Describer:
    """One walk over the page in document order: the text stream, where each image
    stands in it, and the candidate groups."""

    def __init__(self, description: PageDescription, base: str, query_encoding: str) -> None:
        self.description = description
        self.base = base
        self.query_encoding = query_encoding
        self.pieces: list[str] = []
        self.length = 0  # characters of the text stream so far
        # (url, partial ImageText fields, position in the text stream)
        self.found: list[tuple[str, dict[str, str | None], int]] = []
        self.pictures_done: set[int] = set()

    def resolve(self, reference: object) -> str | None:
        if not isinstance(reference, str) or not reference.strip():
            return None
        return resolve(self.base, reference, self.query_encoding)

    def run(self, soup: BeautifulSoup) -> None:
        for node in soup.descendants:
            if isinstance(node, NavigableString):
                if isinstance(node, _NOT_TEXT) or _in_unread(node):
                    continue
                words = " ".join(node.split())
                if words:
                    self.pieces.append(words)
                    self.length += len(words) + 1
            elif isinstance(node, Tag):
                visit = _VISITS.get(node.name)
                if visit is not None:
                    visit(self, node)
        self.finish()

    def add(self, url: str | None, element: Tag, **fields: str | None) -> None:
        if url is not None:
            self.found.append((url, {**fields, "lang": _nearest_lang(element)}, self.length))

    def visit_img(self, img: Tag) -> None:
        words = _words_of(img)
        picture = img.find_parent("picture")
        if picture is not None and id(picture) not in self.pictures_done:
            self.pictures_done.add(id(picture))
            candidates = []
            for source in picture.find_all("source"):
                candidates += _candidates(source, with_src=False)
            self.group(candidates + _candidates(img, with_src=True), img, words)
        elif picture is None:
            self.group(_candidates(img, with_src=True), img, words)

    def group(self, candidates: list[tuple[str, str]], img: Tag, words: dict) -> None:
        resolved: list[tuple[str, str]] = []
        for reference, descriptor in candidates:
            url = self.resolve(reference)
            if url is not None and all(url != seen for seen, _ in resolved):
                resolved.append((url, descriptor))
        if not resolved:
            return
        largest = resolved[0][0]
        if len(resolved) > 1:
            best = max(range(len(resolved)), key=lambda i: (descriptor_size(resolved[i][1]), -i))
            largest = resolved[best][0]
        for url, descriptor in resolved:
            several = len(resolved) > 1
            self.add(
                url,
                img,
                **words,
                descriptor=descriptor or None,
                picture=largest if several else None,
            )
            if several and url != largest:
                self.description.alternatives.setdefault(url, largest)

    def visit_input(self, element: Tag) -> None:
        if str(element.get("type", "")).strip().lower() == "image":
            self.add(self.resolve(element.get("src")), element, **_words_of(element))

    def visit_video(self, element: Tag) -> None:
        self.add(self.resolve(element.get("poster")), element, title=_attr(element, "title"))

    def visit_anchor(self, element: Tag) -> None:
        url = self.resolve(element.get("href"))
        if url is None or not looks_like_image(url):
            return
        inner = element.find("img")
        alt = _attr(inner, "alt") if isinstance(inner, Tag) else None
        self.add(
            url,
            element,
            alt=alt or clean_text(element.get_text(" ")),
            title=_attr(element, "title"),
            caption=_caption_of(element),
        )

    def visit_meta(self, element: Tag) -> None:
        name = str(element.get("property") or element.get("name") or "").strip().lower()
        if name in ("og:image", "og:image:url", "og:image:secure_url"):
            self.add(self.resolve(element.get("content")), element, alt=self.meta_alt(element))

    def meta_alt(self, element: Tag) -> str | None:
        following = element.find_next_sibling("meta", attrs={"property": "og:image:alt"})
        return _attr(following, "content") if isinstance(following, Tag) else None

    def finish(self) -> None:
        stream = " ".join(self.pieces)
        images = self.description.images
        for url, fields, position in self.found:
            if url in images:
                continue
            images[url] = ImageText(context=_context(stream, position), **fields)
        # A URL that is the largest of some picture is fetched whatever else it is.
        largest = {text.picture for text in images.values() if text.picture}
        for url in [url for url in self.description.alternatives if url in largest]:
            del self.description.alternatives[url]


_VISITS = {
    "img": _Describer.visit_img,
    "input": _Describer.visit_input,
    "video": _Describer.visit_video,
    "a": _Describer.visit_anchor,
    "meta": _Describer.visit_meta,
}


def _candidates(element: Tag, with_src: bool) -> list[tuple[str, str]]:
    """An ``<img>``'s or ``<source>``'s candidates: the lazy attributes stand for the
    ones a script copies them into (``data-srcset`` for ``srcset``, ``data-src``
    for ``src``)."""
    srcset = next(
        (element.get(name) for name in LAZY_SRCSET_ATTRIBUTES if element.get(name)),
        element.get("srcset"),
    )
    found = srcset_candidates(srcset) if isinstance(srcset, str) else []
    if with_src:
        src = next(
            (element.get(name) for name in LAZY_SRC_ATTRIBUTES if element.get(name)),
            element.get("src"),
        )
        if isinstance(src, str) and src.strip():
            found.insert(0, (src, ""))
    return found


def _attr(element: Tag | None, name: str) -> str | None:
    value = element.get(name) if element is not None else None
    return clean_text(value if isinstance(value, str) else None)


def _words_of(img: Tag) -> dict[str, str | None]:
    return {"alt": _attr(img, "alt"), "title": _attr(img, "title"), "caption": _caption_of(img)}


def _caption_of(element: Tag) -> str | None:
    figure = element.find_parent("figure")
    caption = figure.find("figcaption") if figure is not None else None
    return clean_text(caption.get_text(" ")) if isinstance(caption, Tag) else None


def _nearest_lang(element: Tag) -> str | None:
    for node in (element, *element.parents):
        if isinstance(node, Tag) and node.get("lang") is not None:
            return _lang_of(node)
    return None


def _in_unread(node: NavigableString) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.name in _UNREAD:
            return True
        if parent.name in ("body", "html", "[document]"):
            return False
        parent = parent.parent
    return False


def _context(stream: str, position: int) -> str | None:
    """The words within ``CONTEXT_CHARS`` each side of ``position``, cut at words."""
    start, end = max(position - CONTEXT_CHARS, 0), position + CONTEXT_CHARS
    window = stream[start:end]
    if start > 0 and stream[start - 1] != " ":
        window = window.partition(" ")[2]  # a word cut at the start
    if end < len(stream) and stream[end : end + 1] != " ":
        window = window.rpartition(" ")[0]  # a word cut at the end
    return clean_text(window)
