"""Image URLs in CSS: ``style`` attributes, ``<style>`` blocks and style sheets. Pure.

What a browser would load as an image: ``url()`` and ``image-set()`` in the image
properties, with quoting, escapes and comments handled, the last declaration of a
property in a rule winning (a later gradient hides an earlier image), and fonts left out.
A sheet's images come with the selector of their rule (``stylesheet_image_rules``), for
``selectors`` to tell whether the page has an element it matches; rules a screen never
applies (``@media print``, ``@page``) give none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from crawler.web.selectors import media_applies, nest_selector

# Properties whose url() a browser loads as an image. Names in one group set the same
# image: the shorthand resets it, so the later of ``background`` and
# ``background-image`` wins. @font-face descriptors (``src``) are deliberately absent.
_CSS_IMAGE_PROPERTIES = {
    "background": "background",
    "background-image": "background",
    "list-style": "list-style",
    "list-style-image": "list-style",
    "border-image": "border-image",
    "border-image-source": "border-image",
    "mask": "mask",
    "mask-image": "mask",
    "-webkit-mask": "mask",
    "-webkit-mask-image": "mask",
    "content": "content",
    "cursor": "cursor",
}
# Functions whose string arguments are URLs: url("a.png"), image-set("a.png" 1x).
_CSS_URL_FUNCTIONS = frozenset({"url", "image-set", "-webkit-image-set"})
_CSS_MAY_HOLD_IMAGES = re.compile(r"url\(|image-set\(", re.I)
_CSS_NEWLINES = re.compile(r"\r\n|[\r\f]")
# CSS whitespace is space, tab and newline (after _CSS_NEWLINES): not Python's \s, which
# holds U+00A0, U+3000 ... that an unquoted url() keeps, and non-printable code points,
# which make it a bad URL.
_CSS_TOKEN = re.compile(
    r"""
      (?P<comment>/\*.*?(?:\*/|\Z))
    | "(?P<double_quoted>(?:[^"\\\n]|\\.)*)"?
    | '(?P<single_quoted>(?:[^'\\\n]|\\.)*)'?
    | (?i:url)\([ \t\n]*(?P<bare_url>(?:[^()"'\\ \t\n\x00-\x08\x0b\x0e-\x1f\x7f]
        |\\[0-9a-fA-F]{1,6}[ \t\n]?|\\[^\n0-9a-fA-F])+)[ \t\n]*\)
    | (?P<function>-?[a-zA-Z_][-\w]*)\(
    | (?P<word>[-\w]+)
    | (?P<symbol>[{}();:!])
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.S | re.X,
)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n]?|(\n)|(.))", re.S)


_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_IMPORT = re.compile(
    r"""@import\s+(?:url\(\s*(?P<q1>["']?)(?P<url>[^"')]*?)(?P=q1)\s*\)"""
    r"""|(?P<q2>["'])(?P<string>[^"']*?)(?P=q2))(?P<media>[^;{}]*)""",
    re.I,
)
# At-rules whose blocks hold no rule for the page's elements (@font-face's src is a
# font; @page styles printed pages).
_SKIPPED_AT_RULES = frozenset(
    {"page", "font-face", "counter-style", "font-feature-values", "property"}
    | {"font-palette-values", "color-profile", "position-try", "view-transition"}
)
_KEYFRAMES = re.compile(r"(?:-[a-z]+-)?keyframes", re.I)
_AT_KEYWORD = re.compile(r"@(-?[-\w]+)")
_SPACES = re.compile(r"\s+")
# Blocks nested deeper than this (real sheets nest a few levels) show no image.
MAX_NESTING = 32
# A nested rule's selector repeats its parent's once per "&" ("a{&&&&{&&&&{..." makes it
# four times longer a level); one that would be longer is not built: the rule counts as
# shown whatever the page holds, as a selector soupsieve cannot read does.
MAX_SELECTOR_CHARS = 100_000


class CssRule(NamedTuple):
    """Images a rule shows, and its selector (None: shown whatever the page holds, as in
    ``style`` attributes and ``@keyframes``); nested rules' selectors are resolved."""

    selector: str | None
    urls: list[str]


def import_urls(css: str) -> list[str]:
    """URLs of the style sheets a sheet pulls in with ``@import`` (comments ignored),
    but for those only imported for media a screen is not (``@import "p.css" print``)."""
    found = []
    for match in _IMPORT.finditer(_COMMENT.sub("", css)):
        url = match.group("url") or match.group("string")
        media = re.sub(r"\b(?:layer|supports)\([^)]*\)|\blayer\b", "", match.group("media"))
        if url and media_applies(media):
            found.append(url)
    return found


def stylesheet_image_rules(css: str) -> list[CssRule]:
    """The image-showing rules of a style sheet (or ``<style>`` block), in order: each
    winning image declaration with its rule's selector."""
    if not may_hold_images(css):
        return []
    return _scan(css, declarations_at_top_level=False).rules()


def stylesheet_image_urls(css: str) -> list[str]:
    """Image URLs a browser would load from a style sheet's declarations, in order, if
    every rule matched an element."""
    return [url for rule in stylesheet_image_rules(css) for url in rule.urls]


def style_attribute_image_urls(css: str) -> list[str]:
    """Image URLs a browser would load from a ``style`` attribute, in order."""
    if not may_hold_images(css):
        return []
    return [url for rule in _scan(css, declarations_at_top_level=True).rules() for url in rule.urls]


def may_hold_images(css: str) -> bool:
    """False when ``css`` certainly names no image (no ``url(`` nor ``image-set(``)."""
    return _CSS_MAY_HOLD_IMAGES.search(css) is not None


def _scan(css: str, declarations_at_top_level: bool) -> _CssScanner:
    text = _CSS_NEWLINES.sub("\n", css)
    scanner = _CssScanner(text, declarations_at_top_level)
    for token in _CSS_TOKEN.finditer(text):
        scanner.feed(token)
    scanner.finish()
    return scanner


@dataclass
class _Declaration:
    position: int
    important: bool
    urls: list[str]
    variables: list[str]  # custom properties it reads with var(--name)
    selector: str | None  # of its rule (None: applies whatever the page holds)


@dataclass
class _Block:
    """An open ``{ }`` block: its image declarations by property group, and what they
    apply to: ``selector``'s elements, or any page (``always``, a ``@keyframes`` step);
    neither (a top-level ``@media``), or a block a screen skips, counts nothing."""

    declarations: dict[str, _Declaration]
    selector: str | None = None
    always: bool = False
    keyframes: bool = False
    skipped: bool = False

    @property
    def counts(self) -> bool:
        return not self.skipped and (self.always or self.selector is not None)


def _block_after(parent: _Block, prelude: str) -> _Block:
    """The block opened by ``prelude {`` inside ``parent``."""
    prelude = _SPACES.sub(" ", _COMMENT.sub("", prelude)).strip()
    if parent.skipped:
        return _Block({}, skipped=True)
    if parent.keyframes:
        return _Block({}, always=True)  # a step (from, 50%): not a selector
    keyword = _AT_KEYWORD.match(prelude)
    if keyword is not None:
        name = keyword.group(1).lower()
        if name == "media":
            skipped = not media_applies(prelude[keyword.end() :])
            return _Block({}, parent.selector, parent.always, skipped=skipped)
        if name in _SKIPPED_AT_RULES:
            return _Block({}, skipped=True)
        if _KEYFRAMES.fullmatch(name):
            return _Block({}, keyframes=True)
        return _Block({}, parent.selector, parent.always)  # @supports, @layer, @container
    if parent.selector is None:
        return _Block({}, prelude or "*")
    copies = prelude.count("&") + prelude.count(",") + 1  # of the parent, at most
    if len(prelude) + copies * (len(parent.selector) + 7) > MAX_SELECTOR_CHARS:
        return _Block({}, always=True)
    return _Block({}, nest_selector(parent.selector, prelude or "&"))


class _CssScanner:
    """A CSS reader just deep enough to know which declaration of a rule wins.

    Within one rule the last declaration of a property group wins (an ``!important``
    one is only beaten by a later ``!important`` one); its url()s are the images shown.
    """

    def __init__(self, text: str, declarations_at_top_level: bool) -> None:
        self.text = text
        self.blocks = [_Block({}, always=declarations_at_top_level)]
        self.winners: list[_Declaration] = []
        # url()s held by custom properties (--hero: url(a.png)), anywhere in this CSS:
        # an image property that reads one with var(--hero) shows them.
        self.custom: dict[str, list[str]] = {}
        self.start_statement(0)

    def start_statement(self, position: int) -> None:
        self.position = position
        self.name: list[str] = []
        self.in_value = False
        self.functions: list[str] = []
        self.urls: list[str] = []
        self.variables: list[str] = []
        self.important = False
        self.after_bang = False

    def feed(self, token: re.Match[str]) -> None:
        kind = token.lastgroup
        text = token.group(kind) if kind else ""
        if kind == "comment":
            return
        if kind == "space":
            if not self.in_value:
                self.name.append(" ")
            return
        if kind == "symbol":
            self.feed_symbol(text, token.end())
        elif not self.in_value:
            self.name.append(text)
        elif kind == "bare_url":
            self.urls.append(_css_unescape(text))
        elif kind in ("double_quoted", "single_quoted"):
            if self.functions and self.functions[-1] in _CSS_URL_FUNCTIONS:
                self.urls.append(_css_unescape(text))
        elif kind == "function":
            self.functions.append(text.lower())
        elif kind == "word" and self.after_bang and text.lower() == "important":
            self.important = True
        elif kind == "word" and text.startswith("--") and self.functions[-1:] == ["var"]:
            self.variables.append(text)
        self.after_bang = text == "!"

    def feed_symbol(self, symbol: str, end: int) -> None:
        if symbol == "(":
            self.functions.append("")
        elif symbol == ")":
            if self.functions:
                self.functions.pop()
        elif symbol == ":" and not self.functions and not self.in_value:
            self.in_value = True
        elif symbol == ";" and not self.functions:
            self.end_declaration()
            self.start_statement(end)
        elif symbol == "{":
            if len(self.blocks) > MAX_NESTING:  # (each level wraps the selector again)
                self.blocks.append(_Block({}, skipped=True))
            else:
                prelude = self.text[self.position : end - 1]
                self.blocks.append(_block_after(self.blocks[-1], prelude))
            self.start_statement(end)
        elif symbol == "}":
            self.end_declaration()
            if len(self.blocks) > 1:
                self.winners.extend(self.blocks.pop().declarations.values())
            self.start_statement(end)
        elif not self.in_value:
            self.name.append(symbol)

    def end_declaration(self) -> None:
        if not self.in_value or not self.blocks[-1].counts:
            return
        name = "".join(self.name).strip()
        if name.startswith("--"):  # custom property names are case-sensitive
            if self.urls:
                self.custom[name] = self.urls
            return
        group = _CSS_IMAGE_PROPERTIES.get(name.lower())
        if group is None:
            return
        block = self.blocks[-1]
        previous = block.declarations.get(group)
        if previous is None or self.important or not previous.important:
            block.declarations.pop(group, None)  # re-insert: document order follows the winner
            block.declarations[group] = _Declaration(
                self.position, self.important, self.urls, self.variables, block.selector
            )

    def finish(self) -> None:
        self.end_declaration()
        for block in self.blocks:
            self.winners.extend(block.declarations.values())
        self.winners.sort(key=lambda declaration: declaration.position)

    def rules(self) -> list[CssRule]:
        """Each winning declaration's images (its own and its variables'), in order."""
        found = []
        for declaration in self.winners:
            urls = declaration.urls + [
                url for name in declaration.variables for url in self.custom.get(name, [])
            ]
            if urls:
                found.append(CssRule(declaration.selector, urls))
        return found


def _css_unescape(text: str) -> str:
    """Undo CSS escapes: ``\\28 `` is ``(``, ``\\"`` is ``"``, an escaped newline vanishes."""
    if "\\" not in text:
        return text
    return _CSS_ESCAPE.sub(_css_unescape_one, text)


def _css_unescape_one(escape: re.Match[str]) -> str:
    hex_digits, newline, char = escape.groups()
    if hex_digits is None:
        return "" if newline else char
    code_point = int(hex_digits, 16)
    if code_point == 0 or 0xD800 <= code_point <= 0xDFFF or code_point > 0x10FFFF:
        return "\ufffd"
    return chr(code_point)
