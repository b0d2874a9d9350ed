"""Which style-sheet rules a browser applies to a page. Pure: no I/O.

A browser loads a rule's background only when its selector matches an element of the
page. Here a rule's selector is made matchable (pseudo-elements stripped: ``a::before``
paints on its ``a``), its media list read (``@media print`` never applies on a screen),
and matched by soupsieve, which BeautifulSoup already brings, on the whole page. User-action
pseudo-classes (``:hover``, ``:focus``, ``:active``, ``:visited``, ``:target``...) never
match there: a crawler neither points, types nor follows a fragment.

Matching needs the page's whole tree, which extraction does not build (it keeps only the
elements it reads). So a rule is first tried against the page's ``PageTokens``, the tag
names, ids and classes of all its elements: a selector that needs a class no element has
cannot match, and most rules of a site's sheets end there. Only the rest cost a parse of
the whole page (``match_selectors``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import soupsieve
from bs4 import BeautifulSoup

# Pseudo-elements: ::name, ::name(args), and the four CSS 2 ones with a single colon.
_PSEUDO_ELEMENT = re.compile(
    r"::[-\w]+(?:\((?:[^()]|\([^()]*\))*\))?|:(?:before|after|first-line|first-letter)\b",
    re.I,
)
# Vendor pseudo-classes soupsieve does not know: user states (never matching, as the
# standard ones do) and the old names of :is().
_VENDOR_STATES = re.compile(
    r":(?:-webkit-autofill|-moz-focusring|-moz-ui-invalid|-moz-ui-valid|autofill"
    r"|-webkit-full-screen|-moz-full-screen|fullscreen|picture-in-picture"
    r"|popover-open|modal|user-invalid|user-valid)\b",
    re.I,
)
_VENDOR_IS = re.compile(r":-(?:webkit|moz)-any\(", re.I)
# What a compound selector needs, outside parentheses and attribute brackets: a type
# name at its start, ids and classes. (Escaped names are not read: no prefilter then.)
_NEEDED = re.compile(r"(?:^|(?<=[\s>+~]))([a-zA-Z][-\w]*)|([#.])(-?[_a-zA-Z][-\w]*)")
_NESTED = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_MEDIA_TYPES_ON_SCREEN = frozenset({"all", "screen"})
_MEDIA_TYPES = frozenset(
    {"all", "screen", "print", "speech", "tv", "handheld", "projection", "tty"}
    | {"braille", "embossed", "aural"}
)


@dataclass(frozen=True)
class PageTokens:
    """Every tag name, id and class on a page (lower-cased: a prefilter errs towards
    "may match"), outside ``<template>``."""

    names: frozenset[str]


def page_tokens(tags: Iterable[str], ids: Iterable[str], classes: Iterable[str]) -> PageTokens:
    return PageTokens(
        frozenset(tag.lower() for tag in tags)
        | frozenset("#" + value.lower() for value in ids)
        | frozenset("." + value.lower() for value in classes)
    )


@dataclass(frozen=True)
class ImageRule:
    """A style rule's images and when they show: ``selector`` None applies always (a
    ``style`` attribute, a ``@keyframes`` step); else the images show when it matches.
    ``needs`` holds, per selector of the list, the tokens an element must carry for it
    to match (None: not known, try it)."""

    selector: str | None
    urls: tuple[str, ...]
    needs: tuple[frozenset[str] | None, ...] = ()

    def may_match(self, tokens: PageTokens) -> bool:
        """False when no element of the page can match (a needed name is missing)."""
        if self.selector is None:
            return True
        return any(need is None or need <= tokens.names for need in self.needs)


def applied_rules(
    rules: Sequence[ImageRule],
    tokens: PageTokens,
    match: Callable[[list[str]], list[bool]],
) -> list[ImageRule]:
    """The rules of ``rules`` that show their images on the page, in order: those with
    no selector, and those whose selector matches an element. Selectors the page's
    ``tokens`` rule out are not matched; ``match`` (of the whole page: see
    ``match_selectors``) is called once, with the others, and only if there are any."""
    possible = [rule for rule in rules if rule.may_match(tokens)]
    selectors = list(dict.fromkeys(r.selector for r in possible if r.selector is not None))
    matched = dict(zip(selectors, match(selectors), strict=True)) if selectors else {}
    return [rule for rule in possible if rule.selector is None or matched[rule.selector]]


def image_rule(selector: str | None, urls: Sequence[str]) -> ImageRule:
    """The rule of ``selector`` (as written in the sheet) showing ``urls``."""
    if selector is None:
        return ImageRule(None, tuple(urls))
    matchable = matchable_selector(selector)
    return ImageRule(matchable, tuple(urls), tuple(_needs(part) for part in split_list(matchable)))


def matchable_selector(selector: str) -> str:
    """``selector`` with pseudo-elements stripped (a part left empty is ``*``) and
    vendor names soupsieve does not know made standard."""
    text = _VENDOR_IS.sub(":is(", _VENDOR_STATES.sub(":hover", selector))
    text = _PSEUDO_ELEMENT.sub("", text)
    parts = [part.strip() or "*" for part in split_list(text)]
    return ", ".join(parts)


def nest_selector(parent: str, child: str) -> str:
    """CSS nesting: ``child`` (relative, or with ``&``) inside a rule of ``parent``."""
    outer = f":is({parent})"
    parts = []
    for part in split_list(child):
        part = part.strip()
        parts.append(part.replace("&", outer) if "&" in part else f"{outer} {part}")
    return ", ".join(parts)


def split_list(selector: str) -> list[str]:
    """The selectors of a comma-separated list (commas inside parentheses, brackets and
    strings do not split)."""
    parts, depth, start, quote = [], 0, 0, ""
    for position, char in enumerate(selector):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(selector[start:position])
            start = position + 1
    parts.append(selector[start:])
    return parts


def _needs(selector: str) -> frozenset[str] | None:
    if "\\" in selector or "|" in selector or '"' in selector or "'" in selector:
        return None  # escapes, namespaces, strings: not worth reading here
    outside = selector
    while True:  # drop (arguments) and [attributes], innermost first
        stripped = _NESTED.sub(" ", outside)
        if stripped == outside:
            break
        outside = stripped
    if "(" in outside or "[" in outside:
        return None
    needed = set()
    for name, sigil, value in _NEEDED.findall(outside.strip()):
        needed.add(name.lower() if name else sigil + value.lower())
    return frozenset(needed)


def media_applies(media: str) -> bool:
    """Whether a media query list (``@media`` prelude, ``media=`` attribute) can apply
    on a screen of some size: ``print`` and the other non-screen types never do, nor
    ``not screen``; features (``(max-width: 600px)``) are not evaluated (some screen
    has them). An empty list applies."""
    queries = [query.strip().lower() for query in split_list(media)]
    if all(not query for query in queries):
        return True
    return any(_query_applies(query) for query in queries if query)


def _query_applies(query: str) -> bool:
    words = query.replace("(", " (").split()
    negated = bool(words) and words[0] == "not"
    if words and words[0] in ("not", "only"):
        words = words[1:]
    if not words or words[0].startswith("("):
        return True  # features only, negated or not: some screen has (or lacks) them
    media_type = words[0]
    if media_type not in _MEDIA_TYPES:
        return False  # an unknown type is a query matching nothing, as in browsers
    on_screen = media_type in _MEDIA_TYPES_ON_SCREEN
    if negated:
        # "not print and (...)" applies on a screen; "not screen ..." only where the
        # features fail, which some screen does, unless it has none.
        return not on_screen or len(words) > 1
    return on_screen


def match_selectors(text: str, selectors: Sequence[str]) -> list[bool]:
    """Which of ``selectors`` match an element of the page ``text`` (HTML), parsed whole
    by BeautifulSoup with lxml; ``<template>`` content is inert, as in a browser. A
    selector soupsieve cannot read counts as matching: a browser that knows it may."""
    soup = BeautifulSoup(text.replace("\x00", "\ufffd"), "lxml")
    for template in soup.find_all("template"):
        template.decompose()
    matched = []
    for selector in selectors:
        compiled = _compiled(selector)
        try:
            matched.append(compiled is None or compiled.select_one(soup) is not None)
        except (RecursionError, ValueError, TypeError):  # a hostile selector: as unread
            matched.append(True)
    return matched


@functools.lru_cache(maxsize=4096)
def _compiled(selector: str) -> soupsieve.SoupSieve | None:
    try:
        return soupsieve.compile(selector)
    except (soupsieve.SelectorSyntaxError, NotImplementedError, ValueError, RecursionError):
        return None
