"""Properties of srcset and CSS reading on any text: parse_srcset and the crawler.web.css
functions never raise and return strings; srcset candidates are non-empty, without ASCII
whitespace or end commas; nested rules' selectors stay bounded; generated srcsets,
``url()``/``image-set()`` declarations (quoted, unquoted, escaped) and ``@import`` rules
give back exactly their URLs, in order; whatever they return resolves to None or an
http(s) URL."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler.urls import normalize, resolve
from crawler.web import css
from crawler.web.css import (
    import_urls,
    may_hold_images,
    style_attribute_image_urls,
    stylesheet_image_rules,
    stylesheet_image_urls,
)
from crawler.web.extract import parse_srcset

PAGE = "http://example.org/dir/page.html"
ASCII_WHITESPACE = " \t\n\r\f"


def assert_resolves_to_a_url_or_none(value: str) -> None:
    resolved = resolve(PAGE, value)
    if resolved is not None:
        assert resolved.startswith(("http://", "https://")), (value, resolved)
        assert normalize(resolved) == resolved, (value, resolved)


# -- parse_srcset ---------------------------------------------------------------------

DESCRIPTORS = st.one_of(
    st.integers(min_value=1, max_value=10**6).map(lambda n: f"{n}w"),
    st.floats(min_value=0.1, max_value=10, allow_nan=False).map(lambda x: f"{x:g}x"),
    st.integers(min_value=1, max_value=5000).map(lambda n: f"{n}h"),
    st.sampled_from(["(weird, descriptor) 1x", "2x (a,b,c)", "1x 100w", "(", "()"]),
)
# A candidate URL as a srcset holds it: no ASCII whitespace, no comma at either end.
SRCSET_URLS = st.text(
    st.characters(exclude_characters=ASCII_WHITESPACE, exclude_categories=("Cs",)), min_size=1
).filter(lambda url: not url.startswith(",") and not url.endswith(","))
SPACES = st.text(ASCII_WHITESPACE, max_size=3)
SPACE = st.text(ASCII_WHITESPACE, min_size=1, max_size=3)


@st.composite
def srcsets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A srcset of candidates, each a URL with or without descriptors, and its URLs."""
    urls = draw(st.lists(SRCSET_URLS, min_size=1, max_size=6))
    text = draw(SPACES)
    for index, url in enumerate(urls):
        text += url
        descriptor = draw(st.none() | DESCRIPTORS)
        last = index == len(urls) - 1
        if descriptor is not None and "(" in descriptor and ")" not in descriptor:
            descriptor = None if not last else descriptor  # "(" eats the rest of the srcset
        if descriptor is not None:
            text += draw(SPACE) + descriptor
            if not last:
                text += draw(SPACES) + "," + draw(SPACES)
        elif not last:
            # right after a bare URL a comma ends it only when whitespace follows
            text += draw(st.sampled_from([",", ",,"])) + draw(SPACE)
        if last:
            text += draw(st.sampled_from(["", ",", " ,", ", "]))
    return text + draw(SPACES), urls


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), srcsets().map(lambda pair: pair[0]), st.text(",() 1xw.a", max_size=30)))
@example("a.jpg (unclosed, 1x, b.jpg 2x")
def test_parse_srcset_gives_candidate_urls(value: str) -> None:
    urls = parse_srcset(value)
    assert isinstance(urls, list)
    for url in urls:
        assert isinstance(url, str) and url, urls
        assert not set(url) & set(ASCII_WHITESPACE), urls
        assert not url.startswith(",") and not url.endswith(","), urls
        assert url in value, urls
        assert_resolves_to_a_url_or_none(url)


@settings(max_examples=150, deadline=None)
@given(srcsets())
@example(("a.png 1x, b.png 640w", ["a.png", "b.png"]))
@example(("r?w=1,h=2 1x,r?w=2,h=4 2x", ["r?w=1,h=2", "r?w=2,h=4"]))
def test_parse_srcset_finds_every_candidate_in_order(srcset: tuple[str, list[str]]) -> None:
    text, urls = srcset
    assert parse_srcset(text) == urls, text


# -- CSS: never raises ----------------------------------------------------------------

CSS_PIECES = st.sampled_from(
    [
        "url(",
        "URL(",
        ")",
        "(",
        "image-set(",
        "-webkit-image-set(",
        "var(--a)",
        "--a:",
        "background:",
        "background-image:",
        "cursor:",
        "content:",
        "{",
        "}",
        ";",
        ":",
        "!important",
        "'",
        '"',
        "\\",
        "\\28 ",
        "\\\n",
        "/*",
        "*/",
        "@media print",
        "@media screen",
        "@font-face",
        "@keyframes k",
        "@import ",
        "@supports (x)",
        "&",
        ",",
        " ",
        "\n",
        "\r",
        "\f",
        "a.png",
        "data:image/png;base64,AAAA",
        "javascript:x()",
        ".a",
        "div > p",
        "*",
    ]
)
CSS_TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(CSS_PIECES, st.text(max_size=3)), max_size=40).map("".join),
)


@settings(max_examples=250, deadline=None)
@given(CSS_TEXT)
@example("a{" + "&&&&{" * 12 + "background:url(x.png)" + "}" * 13)
def test_css_functions_return_strings_that_resolve_to_urls_or_none(text: str) -> None:
    assert isinstance(may_hold_images(text), bool)
    rules = stylesheet_image_rules(text)
    found = [
        *(url for rule in rules for url in rule.urls),
        *stylesheet_image_urls(text),
        *style_attribute_image_urls(text),
        *import_urls(text),
    ]
    for rule in rules:
        assert rule.urls, rules
        assert rule.selector is None or isinstance(rule.selector, str)
        # A nested rule's selector repeats its parent's for each "&": it stays bounded.
        assert len(rule.selector or "") <= max(len(text), css.MAX_SELECTOR_CHARS)
    assert [url for rule in rules for url in rule.urls] == stylesheet_image_urls(text)
    for url in found:
        assert isinstance(url, str)
        assert_resolves_to_a_url_or_none(url)


@settings(max_examples=150, deadline=None)
@given(CSS_TEXT)
def test_what_may_hold_no_image_holds_none(text: str) -> None:
    # Checked on the scanner itself, which the public functions skip when it says False.
    for top_level in (True, False):
        if css._scan(text, declarations_at_top_level=top_level).rules():
            assert may_hold_images(text), text
    if "url(" in text.lower() or "image-set(" in text.lower():
        assert may_hold_images(text)


# -- CSS: generated declarations give back their URLs -----------------------------------

CSS_URLS = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=12
)
HEX = set("0123456789abcdefABCDEF")
# CSS Syntax: what an unquoted url() cannot hold as it is (whitespace, quotes, parentheses,
# backslash, non-printable code points); \r and \f are newlines.
_UNQUOTED_NEEDS_ESCAPE = re.compile(r"""[\s"'()\\\x00-\x08\x0b\x0e-\x1f\x7f]""")


@st.composite
def css_escaped(draw: st.DrawFn, url: str, quote: str) -> str:
    """``url`` written in CSS: unquoted (``quote`` "") or in quotes, escaped where it must
    be and now and then where it need not be."""
    out = []
    for char in url:
        if quote:
            must = char in (quote, "\\", "\n", "\r", "\f")
        else:
            must = _UNQUOTED_NEEDS_ESCAPE.match(char) is not None
        if must or draw(st.integers(0, 9)) == 0:
            if char in HEX or char in "\n\r\f" or draw(st.booleans()):
                out.append(f"\\{ord(char):x} ")  # hex, ended by one space
            else:
                out.append("\\" + char)
        else:
            out.append(char)
    return quote + "".join(out) + quote


@st.composite
def url_values(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A property value of url() and image-set() images, and its URLs in order."""
    layers, urls = [], []
    for _ in range(draw(st.integers(1, 3))):
        url = draw(CSS_URLS)
        if draw(st.booleans()):
            quote = draw(st.sampled_from(["", "'", '"']))
            name = draw(st.sampled_from(["url", "URL", "Url"]))
            inner = draw(css_escaped(url, quote))
            pad = draw(st.sampled_from(["", " ", "\n  "]))
            layers.append(f"{name}({pad}{inner}{pad}){draw(st.sampled_from(['', ' no-repeat']))}")
        else:
            quote = draw(st.sampled_from(["'", '"']))
            layers.append(f"image-set({draw(css_escaped(url, quote))} 1x)")
        urls.append(url)
    return ", ".join(layers), urls


IMAGE_PROPERTIES = ["background", "list-style-image", "border-image-source", "mask-image"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(url_values(), min_size=1, max_size=len(IMAGE_PROPERTIES)),
    st.sampled_from(["background", "background-image"]),
)
@example([("url(a\u00a0b.png)", ["a\u00a0b.png"])], "background")  # not CSS whitespace
@example([("url(\u3000x)", ["\u3000x"])], "background-image")
def test_a_style_attribute_gives_its_urls_in_order(
    values: list[tuple[str, list[str]]], background: str
) -> None:
    # One declaration per property group: a later one of the same group would win.
    names = [background, *IMAGE_PROPERTIES[1:]]
    style = "; ".join(f"{name}: {value}" for name, (value, _) in zip(names, values, strict=False))
    expected = [url for _, urls in values for url in urls]
    assert style_attribute_image_urls("color: red; " + style + ";") == expected, style


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([".a", "div > p", "#x", "a:hover", "*", "ul li, ol li"]),
            st.sampled_from(["background", "background-image", "cursor", "content"]),
            url_values(),
            st.sampled_from(["", "@media screen", "@media print", "@font-face", "@page"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_stylesheet_gives_the_urls_a_screen_shows_in_order(
    rules: list[tuple[str, str, tuple[str, list[str]], str]],
) -> None:
    sheet, expected = [], []
    for selector, name, (value, urls), at_rule in rules:
        rule = f"{selector} {{ color: red; {name}: {value} }}"
        if at_rule in ("@font-face", "@page"):
            rule = f"{at_rule} {{ {name}: {value} }}"
        elif at_rule:
            rule = f"{at_rule} {{ {rule} }}"
        sheet.append(rule)
        if at_rule in ("", "@media screen"):
            expected.extend(urls)
    text = "\n".join(sheet)
    assert stylesheet_image_urls(text) == expected, text
    assert [rule.selector for rule in stylesheet_image_rules(text)] == [
        selector for selector, _, _, at_rule in rules if at_rule in ("", "@media screen")
    ]


# -- @import --------------------------------------------------------------------------

IMPORT_URLS = st.text(
    st.characters(exclude_characters="\"'()*;{}\\", exclude_categories=("Cs", "Zs", "Cc")),
    min_size=1,
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            IMPORT_URLS,
            st.sampled_from(["url({})", "url('{}')", 'url("{}")', "'{}'", '"{}"']),
            st.sampled_from(["", " screen", " print", " all", " layer(x)", " (min-width: 1px)"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_imports_give_the_sheets_a_screen_uses_in_order(
    imports: list[tuple[str, str, str]],
) -> None:
    text = "\n".join(f"@import {form.format(url)}{media};" for url, form, media in imports)
    expected = [url for url, _, media in imports if media != " print"]
    assert import_urls(text) == expected, text


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(
        ["data:image/png;base64,", "javascript:", "JavaScript:", "mailto:", "ftp://h/"]
    ),
    st.text(st.characters(exclude_characters='"\\\n\r\f', exclude_categories=("Cs",))),
)
def test_urls_that_are_not_http_resolve_to_none(scheme: str, rest: str) -> None:
    value = scheme + rest
    quoted = f'"{value}"'
    for found in (
        style_attribute_image_urls(f"background: url({quoted})"),
        stylesheet_image_urls(f"p {{ background-image: image-set({quoted} 1x) }}"),
        parse_srcset(re.sub(f"[{ASCII_WHITESPACE}]", "%20", value) + "x 1x"),
    ):
        assert found, value
        for url in found:
            assert resolve(PAGE, url) is None, url
