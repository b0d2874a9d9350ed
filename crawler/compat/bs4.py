"""The internals of ``beautifulsoup4`` we use.

``crawler.web.extract`` reads a few hundred of a page's thousands of elements. A
``SoupStrainer`` would still let BeautifulSoup run its per-event work (namespace
bookkeeping, string collection) for every tag and string of the page, and keeps the
whole subtree under each tag it lets in. ``parse_kept`` instead gives BeautifulSoup's
own lxml tree builder only the events of the elements extraction reads, so that the
soup holds those elements and nothing else. That means:

* subclassing ``bs4.builder.LXMLTreeBuilder`` (public) and overriding its lxml
  parser-target callbacks ``start``, ``end``, ``data``, ``comment``, ``doctype`` and
  ``pi``, which bs4 documents nowhere as an extension point (lxml calls them with the
  signatures of its documented parser-target interface);
* calling ``BeautifulSoup.handle_starttag``, ``handle_endtag`` and ``endData``
  (documented as private) for the elements we keep, as the base class's ``start`` and
  ``end`` do, minus their namespace bookkeeping: lxml's HTML parser reports no
  namespaces, and that bookkeeping was a fifth of the parse;
* ``data`` still goes through the base class.

It also notes the tag name, id and classes of every element it sees (kept or not, but
not inside an inert one): ``ElementNames``, for ``web.selectors`` to tell which style
rules cannot match without building the whole tree.

Checked on beautifulsoup4 4.12.3 (the floor) through 4.15.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.builder import LXMLTreeBuilder

# A page that is one short line of text (it "looks like a URL"), or XML parsed as
# HTML (XHTML, feeds), is still a page: BeautifulSoup's warnings about them would be
# printed once per such page. Filtered once, for the calls from this module only:
# ``warnings.catch_warnings`` around the parse would change the process's filters
# from every page thread at once, and it is not thread-safe.
_THIS_MODULE = re.escape(__name__) + r"\Z"
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning, module=_THIS_MODULE)
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning, module=_THIS_MODULE)

# keep(name, attributes): whether an element goes into the soup.
Keep = Callable[[str, Mapping[str, str]], bool]


@dataclass
class ElementNames:
    """The tag names, ids and classes of a page's elements, as written."""

    tags: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)


class _KeptElementsBuilder(LXMLTreeBuilder):
    """lxml's HTML parser, handing BeautifulSoup only the elements ``keep`` accepts,
    the text directly inside kept ``text_of`` elements, and nothing inside an
    ``inert`` element (its descendants are not in the soup, whatever ``keep`` says).

    Kept elements nest under their nearest kept ancestor; document order is kept.
    """

    def __init__(self, keep: Keep, text_of: frozenset[str], inert: frozenset[str]) -> None:
        # Attribute values as written: splitting class/rel into lists is work nobody reads.
        super().__init__(multi_valued_attributes=None, store_line_numbers=False)
        self._keep = keep
        self._text_of = text_of
        self._inert = inert
        self._open: list[bool] = []  # per open element: handed on?
        self._inert_depth = 0  # open inert elements
        self._in_text = False  # the innermost open element is a kept text_of one
        self.names = ElementNames()
        self._tags = self.names.tags
        self._add_id = self.names.ids.add
        self._add_classes = self.names.classes.update

    def start(self, name, attrs, nsmap={}):  # noqa: B006 (lxml's signature, never mutated)
        if self._inert_depth:
            self._open.append(False)
            self._inert_depth += name in self._inert
            self._in_text = False
            return
        if name not in self._tags:
            self._tags.add(name)
        if attrs:  # (lxml's empty mapping answers .get() through a KeyError)
            if "class" in attrs:
                self._add_classes(attrs["class"].split())
            if "id" in attrs:
                self._add_id(attrs["id"])  # ("" too: no selector needs it)
        kept = self._keep(name, attrs)
        self._open.append(kept)
        self._inert_depth += name in self._inert
        self._in_text = kept and name in self._text_of
        if kept:
            # What the base class's start does for an element of no namespace, which
            # is every element lxml's HTML parser reports (it knows no namespaces).
            self.soup.handle_starttag(name, None, None, dict(attrs))

    def end(self, name):
        self._in_text = False
        if self._inert_depth and name in self._inert:
            self._inert_depth -= 1
        if self._open.pop():
            self.soup.endData()
            self.soup.handle_endtag(name)

    def data(self, content):
        if self._in_text:
            super().data(content)

    def comment(self, content):
        pass

    def doctype(self, name, pubid, system):
        pass

    def pi(self, target, data=None):
        pass


def parse_kept(
    text: str, keep: Keep, text_of: frozenset[str], inert: frozenset[str]
) -> tuple[BeautifulSoup, ElementNames]:
    """A soup of ``text`` (HTML, parsed by lxml) holding only the elements ``keep``
    accepts outside ``inert`` elements, with the text of kept ``text_of`` elements
    (``find_all(True)`` lists them in document order), and the names of all elements
    outside ``inert`` ones."""
    builder = _KeptElementsBuilder(keep, text_of, inert)
    return BeautifulSoup(text, builder=builder), builder.names
