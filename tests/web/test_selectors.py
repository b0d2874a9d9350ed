import pytest

from crawler.web.css import CssRule, import_urls, stylesheet_image_rules
from crawler.web.extract import extract_page
from crawler.web.selectors import (
    applied_rules,
    image_rule,
    match_selectors,
    matchable_selector,
    media_applies,
    nest_selector,
    page_tokens,
    split_list,
)

PAGE = "http://example.org/p.html"


def images(html: str) -> list[str]:
    return [ref.url.rsplit("/", 1)[-1] for ref in extract_page(html.encode(), PAGE).images]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("a::before", "a"),
        (".x:after", ".x"),
        ("p::first-line, li::marker", "p, li"),
        ("::selection", "*"),
        ("input::-webkit-input-placeholder", "input"),
        ("::part(label)", "*"),
        ("a:hover::after", "a:hover"),
        ("input:-webkit-autofill", "input:hover"),
        (":-webkit-any(h1, h2) b", ":is(h1, h2) b"),
        (".beforehand", ".beforehand"),
    ],
)
def test_matchable_selector(selector: str, expected: str):
    assert matchable_selector(selector) == expected


def test_split_list_ignores_commas_in_arguments_brackets_and_strings():
    assert split_list(':is(a, b) c, [title="x,y"], d') == [":is(a, b) c", ' [title="x,y"]', " d"]


def test_nested_selectors():
    assert nest_selector(".card", ".title") == ":is(.card) .title"
    assert nest_selector(".card", "&:hover, > img") == ":is(.card):hover, :is(.card) > img"
    assert nest_selector("a, b", "& + &") == ":is(a, b) + :is(a, b)"


@pytest.mark.parametrize(
    ("media", "applies"),
    [
        ("", True),
        ("all", True),
        ("screen", True),
        ("only screen and (max-width: 600px)", True),
        ("(min-width: 40em)", True),
        ("not (min-width: 40em)", True),
        ("print", False),
        ("only print", False),
        ("print and (orientation: landscape)", False),
        ("print, screen", True),
        ("not print", True),
        ("not screen", False),
        ("not screen and (color)", True),
        ("speech", False),
        ("PRINT", False),
        ("nonsense", False),
    ],
)
def test_media_applies(media: str, applies: bool):
    assert media_applies(media) is applies


def test_tokens_rule_out_selectors_needing_a_name_no_element_has():
    tokens = page_tokens(["div", "p", "html"], ["main"], ["card", "Wide"])
    possible = (
        ".card",
        "div.card > p",
        "#main .wide",
        "p:not(.missing)",
        ".card:has(.missing)",
        "[data-x] .card",
        "*",
        ":root",
        ".a\\:b",  # (escaped: not read, so tried)
    )
    ruled_out = (".missing", "section .card", "#other", "div.card.missing", "a")
    may = {s: image_rule(s, ["x.png"]).may_match(tokens) for s in possible + ruled_out}
    assert [s for s, ok in may.items() if ok] == list(possible)
    assert image_rule(".missing, .card", ["x.png"]).may_match(tokens)
    assert image_rule(None, ["x.png"]).may_match(page_tokens([], [], []))


def test_match_selectors_on_the_whole_page():
    html = """<html><body><nav><ul class="menu"><li><a href="/a" class="item">a</a></li>
    </ul></nav><main id="content"><p>text</p><input type="checkbox" checked></main>
    <template><div class="in-template"></div></template></body></html>"""
    selectors = [
        "nav .menu > li a.item",
        "#content p:first-child",
        "a:hover",
        "a:focus",
        "a:visited",
        ":not(:hover) > .item",
        "input:checked",
        ".in-template",
        "main + footer",
        "li:unknown-pseudo",  # soupsieve cannot read it: counted as matching
    ]
    assert match_selectors(html, selectors) == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        False,
        False,
        True,
    ]


def test_applied_rules_match_only_what_the_names_leave_possible():
    tokens = page_tokens(["div"], [], ["hero", "tile"])
    rules = [
        image_rule(".hero", ["hero.png"]),
        image_rule(".missing", ["missing.png"]),
        image_rule(None, ["keyframe.png"]),
        image_rule(".tile:hover", ["hover.png"]),
        image_rule(".hero", ["hero-2.png"]),
    ]
    asked = []

    def match(selectors):
        asked.append(selectors)
        return [selector == ".hero" for selector in selectors]

    applied = applied_rules(rules, tokens, match)
    assert [rule.urls for rule in applied] == [("hero.png",), ("keyframe.png",), ("hero-2.png",)]
    assert asked == [[".hero", ".tile:hover"]], "once, each selector once, none ruled out"
    assert applied_rules(rules[1:3], tokens, match) == [rules[2]]
    assert len(asked) == 1, "nothing left to match: the page is not parsed again"


def test_stylesheet_rules_carry_their_selectors():
    css = """
        @charset "utf-8";
        .hero { background: url(hero.jpg) }
        a:hover { cursor: url(hand.cur), pointer }
        @media print { .print { background: url(print.png) } }
        @media screen and (min-width: 40em) {
          .logo { content: url(logo.svg); &:hover { mask-image: url(mask.png) } }
        }
        @supports (display: grid) { .grid::before { content: url(grid.png) } }
        @page { background: url(page.png) }
        @keyframes pulse { from { background: url(k1.png) } 50% { background: url(k2.png) } }
        @media screen { background: url(not-in-a-rule.png) }
        @media print { @media screen { .deep { background: url(deep.png) } } }
        .card { .title { background: url(title.png) } }
    """
    assert stylesheet_image_rules(css) == [
        CssRule(".hero", ["hero.jpg"]),
        CssRule("a:hover", ["hand.cur"]),
        CssRule(".logo", ["logo.svg"]),
        CssRule(":is(.logo):hover", ["mask.png"]),
        CssRule(".grid::before", ["grid.png"]),
        CssRule(None, ["k1.png"]),
        CssRule(None, ["k2.png"]),
        CssRule(":is(.card) .title", ["title.png"]),
    ]


def test_imports_for_print_only_are_not_followed():
    css = '@import "a.css" print; @import url(b.css) screen; @import "c.css" layer(x) print;'
    css += ' @import "d.css"; @import url("e.css") supports(display: grid);'
    assert import_urls(css) == ["b.css", "d.css", "e.css"]


def test_style_block_rules_show_images_only_where_they_match():
    html = """<head><style>
      .hero { background: url(hero.png) }
      .unused { background: url(unused.png) }
      .tile:hover { background: url(hover.png) }
      .tile:focus, .tile:active { background: url(focus.png) }
      nav > .tile::before { content: url(before.png) }
      .tile::after { content: url(after.png) }
      @media print { .hero { background: url(print.png) } }
      @media (max-width: 600px) { .hero { background-image: url(small.png) } }
      @keyframes k { to { background: url(frame.png) } }
      .menu { & .entry { list-style-image: url(nested.png) } }
      .gone .tile { background: url(template-only.png) }
    </style>
    <style media="print">.hero { background: url(print-block.png) }</style>
    <link rel="stylesheet" media="print" href="print.css">
    <link rel="stylesheet" media="screen" href="screen.css">
    </head><body><div class="hero"></div><span class="tile"></span>
    <ul class="menu"><li class="entry">x</li></ul>
    <template><div class="gone"><span class="tile"></span></div></template></body>"""
    # (@keyframes steps show whatever the page holds: taken as the block is read)
    assert images(html) == ["frame.png", "hero.png", "after.png", "small.png", "nested.png"]
    content = extract_page(html.encode(), PAGE)
    assert content.stylesheets == ["http://example.org/screen.css"]


def test_a_page_whose_style_rules_all_miss_is_not_parsed_whole(monkeypatch):
    from crawler.web import extract

    calls = []
    monkeypatch.setattr(extract, "match_selectors", lambda *a: calls.append(a) or [])
    html = "<style>.nowhere { background: url(a.png) } #none b { background: url(b.png) }"
    html += "</style><p class='somewhere'>x</p>"
    assert images(html) == []
    assert calls == []


def test_hostile_style_rules_cost_no_page():
    deep = ".a {" * 5000 + "background: url(deep.png)" + "}" * 5000
    wrapped = ":is(" * 3000 + ".a" + ")" * 3000
    html = f"<style>{deep} {wrapped} {{ background: url(wrapped.png) }}</style><p class=a>"
    found = images(html)  # no exception, no quadratic selector
    assert "deep.png" not in found
    assert match_selectors("<p class=a>", [wrapped, ".a"]) == [True, True]
