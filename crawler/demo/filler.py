"""Filler that pads a demo page to a real page's size with real-looking markup.

A benchmark of HTML parsing wants pages of 30-150 KB that look like a real site's: a
header with a mega-menu, a breadcrumb, a table of contents, article sections of
paragraphs with inline markup and links, a data table, a form, a footer, a style block
and scripts. `make_filler` writes that markup for one page from its own random stream.

The filler adds no image reference of any kind (no ``<img>``, ``<picture>``, ``<svg>``,
``<video>``, ``<link>``, ``url(``, lazy-image ``data-*`` attribute, ``<a>`` to an image,
frame or object), and its only links are to pages of the site and to ``#`` anchors of
the page itself, so a crawl of a padded site finds the same pages and images.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

# Plain words, and a few non-ASCII ones so the pages are real UTF-8.
_PLAIN_WORDS = (
    "account active address advance album anchor answer archive article autumn balance "
    "banner basket beacon border branch bridge bright bucket budget button cabin canvas "
    "capital career carbon cargo castle center channel chapter circle client climate "
    "cluster coastal column comet common company compass content corner cotton county "
    "credit current custom daily dealer debate delta desert design detail device digital "
    "direct domain editor effort ember engine estate event export fabric factor family "
    "feature figure filter finance forest format frame garden gateway global granite "
    "growth harbor health height history holiday island journal kernel ladder lantern "
    "layout leader legacy letter market meadow member method mirror module motion "
    "native network notice number object ocean office option orchard output package "
    "palette partner pattern pixel planet pocket policy portal profile project public "
    "quarter random record region report result river robust route sample schema "
    "season second select series signal silver simple single socket source spring "
    "status stream studio summit supply system target theory timber travel trend "
    "unique update valley vector velvet venture version village vision volume weather "
    "window winter wonder"
)
_WORDS = (
    *_PLAIN_WORDS.split(),
    "café",
    "naïve",
    "façade",
    "Zürich",
    "smörgåsbord",
    "jalapeño",
    "crème",
    "über",
    "piñata",
    "Kraków",
    "São",
    "Straße",
    "fjörður",
    "東京",
    "日本語",
)
_SPAN_CLASSES = ("hl", "term", "badge", "muted", "kbd", "tag")
_LEADS = ("See", "Read more in", "Compare", "As covered in", "Related:", "Details in")
_STYLES = (
    "margin:0 0 1.25em;line-height:1.6",
    "color:#3a3a3a;font-size:1.05em",
    "margin-top:.5em;padding-left:1em;border-left:3px solid #d0d7de",
    "color:#57606a;font-style:italic",
)
_PARAGRAPH_OPENINGS = (
    ("<p>",) * 6
    + tuple(f'<p style="{style}">' for style in _STYLES)
    + ('<p class="lead">', '<p class="note" data-role="aside-note">', '<p class="body-text">')
)
_REGIONS = ("North", "South", "East", "West", "Zürich", "Kraków", "São Paulo", "東京")


@dataclass(frozen=True)
class Filler:
    """Markup for the slots of a page, in document order; empty slots leave it as it is."""

    head: str = ""  # inside <head>, after <title>
    header: str = ""  # first in <body>, before the page's <h1>
    main_top: str = ""  # first in <main>, before the page's figures
    main_bottom: str = ""  # last in <main>, after the figures
    footer: str = ""  # last in <body>


def make_filler(
    rng: random.Random,
    budget: int,
    *,
    page: str,
    pages: Sequence[str],
    url: Callable[[str], str],
) -> Filler:
    """Filler of exactly `budget` encoded bytes (none when `budget` <= 0) for `page`.

    It links only to the site's `pages` (the first is home; menus link to the others),
    spelled through `url`, and to anchors of its own; all choices come from `rng`. The frame
    (header, style, table, form, footer, scripts) comes first, each part kept only if it
    fits; article sections, then words, then whitespace make up the rest of the budget.
    """
    if budget <= 0:
        return Filler()
    home = pages[0]
    others = [other for other in pages if other != page] or [page]
    parts = _Parts(rng, others, url)
    frame = [
        ("header", parts.header(home)),
        ("footer", parts.footer()),
        ("head", f"\n{_STYLE_BLOCK}"),
        ("main_bottom", parts.form(home)),
        ("main_bottom", parts.table()),
        ("head", parts.json_ld(home)),
        ("footer", parts.scripts()),
    ]
    slots: dict[str, list[str]] = {field.name: [] for field in fields(Filler)}
    left = budget
    article = ('<div class="article-body" id="content" data-role="article">\n', "</div>\n")
    if _size("".join(article)) <= left:  # the header's skip link leads there
        left -= _size("".join(article))
    else:
        article = ("", "")
    for slot, text in frame:
        if _size(text) <= left:
            slots[slot].append(text)
            left -= _size(text)
    sections, left = parts.sections(left)
    first = (len(sections) + 2) // 3  # a third of the article before the page's figures
    toc = parts.toc()
    slots["main_top"] = [article[0], toc, *sections[:first]]
    slots["main_bottom"] = [*sections[first:], *slots["main_bottom"], "\n" * left, article[1]]
    return Filler(**{slot: "".join(texts) for slot, texts in slots.items()})


def _size(text: str) -> int:
    return len(text.encode())


@functools.cache
def _sentences() -> tuple[str, ...]:
    """A fixed pool of sentences with inline markup and character references."""
    rng = random.Random("crawler.demo.filler")
    pool = []
    for _ in range(800):
        words = rng.choices(_WORDS, k=rng.randint(6, 18))
        words[0] = words[0][0].upper() + words[0][1:]
        text = ""
        for n, word in enumerate(words):
            roll = rng.random()
            if roll < 0.04:
                word = f"<em>{word}</em>"
            elif roll < 0.07:
                word = f"<strong>{word}</strong>"
            elif roll < 0.09:
                word = f"<code>{word.lower()}_{rng.choice(_WORDS[:40])}()</code>"
            elif roll < 0.12:
                word = f'<span class="{rng.choice(_SPAN_CLASSES)}">{word}</span>'
            elif roll < 0.14:
                word += "&#8217;s"
            elif roll < 0.16:
                word += " &amp;"
            elif roll < 0.17:
                word += " &mdash;"
            if n:
                text += "&nbsp;" if rng.random() < 0.05 else " "
            text += word
        pool.append(text + rng.choice(".....?!"))
    return tuple(pool)


class _Parts:
    """The pieces of one page's filler, all drawn from one random stream."""

    def __init__(self, rng: random.Random, others: list[str], url: Callable[[str], str]) -> None:
        self.rng = rng
        self.others = others
        self.url = url
        self.headings: list[str] = []
        self.blocks = 0  # numbers the ids of blocks within sections

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(_WORDS, k=self.rng.randint(low, high)))

    def label(self, low: int = 1, high: int = 3) -> str:
        return self.words(low, high).title()

    def link(self, attributes: str = "") -> str:
        href = self.url(self.rng.choice(self.others))
        return f'<a href="{href}"{attributes}>{self.label()}</a>'

    def header(self, home: str) -> str:
        rng = self.rng
        n_links = rng.randint(30, 80)
        groups = []
        n = 0
        while n < n_links:
            size = min(n_links - n, rng.randint(5, 12))
            tracks = (f' data-track="nav-{n + i}"' for i in range(size))
            items = "\n".join(f'<li class="menu-item">{self.link(t)}</li>' for t in tracks)
            group = len(groups) + 1
            groups.append(
                f'<li class="menu-group" data-id="g{group}">'
                f'<span class="menu-title">{self.label(1, 2)}</span>\n'
                f'<ul class="submenu" id="submenu-{group}">\n{items}\n</ul></li>'
            )
            n += size
        menu = "\n".join(groups)
        crumbs = (
            f'<li><a href="{self.url(home)}">Home</a></li>'
            f"<li>{self.link()}</li>"
            f'<li aria-current="page">{self.label(2, 3)}</li>'
        )
        return (
            "<!-- site header -->\n"
            '<div class="page-wrap" id="page" data-role="page">\n'
            '<header class="site-header" id="top" data-role="banner">\n'
            '<a class="skip-link" href="#content">Skip to content</a>\n'
            f'<div class="brand"><a class="brand-name" href="{self.url(home)}">'
            f"Demo&nbsp;Site &amp; Co</a></div>\n"
            '<nav class="mega-menu" aria-label="Main" data-role="navigation">\n'
            f'<button class="menu-toggle" type="button" aria-expanded="false" '
            f'aria-controls="menu">Menu</button>\n<ul class="menu" id="menu">\n{menu}\n</ul>\n'
            "</nav>\n"
            f'<form class="search" role="search" action="{self.url(home)}" method="get">'
            '<input type="text" name="q" placeholder="Search the site&hellip;" '
            'aria-label="Search">'
            '<button type="submit" class="btn">Search</button></form>\n'
            "</header>\n"
            f'<nav class="breadcrumb" aria-label="Breadcrumb"><ol>{crumbs}</ol></nav>\n'
            "</div><!-- /.page-wrap -->\n"
        )

    def paragraph(self) -> str:
        rng = self.rng
        sentences = rng.choices(_sentences(), k=rng.randint(3, 7))
        for _ in range(rng.choice((0, 0, 1, 1, 1, 2))):
            lead = rng.choice(_LEADS)
            attributes = rng.choice(("", "", ' class="inline-link"', ' data-track="inline"'))
            sentences.insert(rng.randrange(len(sentences) + 1), f"{lead} {self.link(attributes)}.")
        return f"{rng.choice(_PARAGRAPH_OPENINGS)}{' '.join(sentences)}</p>\n"

    def extra(self, section: int) -> str:
        """A non-paragraph block: a nested list, a quote, code, a call-out or a subheading."""
        rng = self.rng
        kind = rng.randrange(5)
        self.blocks += 1
        if kind == 0:
            items = []
            for _ in range(rng.randint(3, 6)):
                inner = ""
                if rng.random() < 0.4:
                    sub = "".join(f"<li>{self.words(2, 6)}</li>" for _ in range(rng.randint(2, 4)))
                    inner = f'\n<ol class="sub-list">{sub}</ol>\n'
                items.append(f"<li>{self.words(3, 9)}{inner}</li>")
            return '<ul class="bullets" data-role="list">\n' + "\n".join(items) + "\n</ul>\n"
        if kind == 1:
            return (
                f'<blockquote class="pull-quote"><p>{rng.choice(_sentences())}</p>'
                f"<footer>&mdash; {self.label(2, 2)}</footer></blockquote>\n"
            )
        if kind == 2:
            name, field = rng.choice(_WORDS[:150]), rng.choice(_WORDS[:150])
            return (
                f'<pre class="code-sample"><code>const {name} = items.filter((x) =&gt; '
                f"x.{field} &amp;&amp; x.{field}.length &gt; 2);\n"
                f'console.log("{name}", {name}.length);</code></pre>\n'
            )
        if kind == 3:
            return (
                f'<div class="callout callout-info" id="note-{section}-{self.blocks}" '
                'data-role="note" style="border:1px solid #c8d1dc;border-radius:6px;'
                f'padding:.75em 1em;margin:1em 0;background-color:#f6f8fa">'
                f"<strong>Note:</strong> {rng.choice(_sentences())}</div>\n"
            )
        return f'<h3 id="sec-{section}-{self.blocks}">{self.label(2, 4)}</h3>\n'

    def sections(self, budget: int) -> tuple[list[str], int]:
        """Article sections (headings in `self.headings`) of at most `budget` bytes
        together with their TOC, topped up with words to within a word; the bytes left."""
        rng = self.rng
        left = budget - _size(self.toc_frame())
        sections: list[list[str]] = []  # each: opening, blocks..., closing
        full = False
        while not full:
            n = len(sections) + 1
            heading = self.label(2, 5)
            section = [
                f'<section class="article-section" id="sec-{n}" data-index="{n}">\n'
                f"<h2>{heading}</h2>\n",
                "</section>\n",
            ]
            cost = _size(section[0]) + _size(section[1]) + _size(self.toc_entry(n, heading))
            if cost + 200 > left:
                break
            left -= cost
            sections.append(section)
            self.headings.append(heading)
            for _ in range(rng.randint(3, 8)):
                block = self.paragraph() if rng.random() < 0.8 else self.extra(n)
                if _size(block) > left:
                    full = True
                    break
                section.insert(-1, block)
                left -= _size(block)
        if not sections:
            left = budget
            sections.append([])
        top_up = self.top_up(left)
        sections[-1].insert(-1 if len(sections[-1]) else 0, top_up)
        return ["".join(section) for section in sections], left - _size(top_up)

    def top_up(self, budget: int) -> str:
        """A paragraph of about `budget` bytes (empty when that is too few for one)."""
        if budget < 16:
            return ""
        words: list[str] = []
        left = budget - _size("<p></p>\n")
        for word in self.rng.choices(_WORDS, k=budget):
            if _size(word) + 1 > left:
                break
            words.append(word)
            left -= _size(word) + 1
        return f"<p>{' '.join(words)}.</p>\n" if words else ""

    def toc_frame(self) -> str:
        return (
            '<nav class="toc" id="toc" aria-label="Contents" data-role="toc">'
            "<h2>Contents</h2>\n<ol>\n</ol></nav>\n"
        )

    def toc_entry(self, n: int, heading: str) -> str:
        return f'<li><a href="#sec-{n}">{heading}</a></li>\n'

    def toc(self) -> str:
        if not self.headings:
            return ""
        entries = "".join(self.toc_entry(n + 1, h) for n, h in enumerate(self.headings))
        return self.toc_frame().replace("<ol>\n", f"<ol>\n{entries}", 1)

    def table(self) -> str:
        rng = self.rng
        rows = []
        for n in range(1, rng.randint(10, 40) + 1):
            change = rng.uniform(-9, 9)
            trend, color = ("up", "#1a7f37") if change >= 0 else ("down", "#cf222e")
            item = self.link() if rng.random() < 0.3 else self.label(1, 3)
            rows.append(
                f'<tr data-id="row-{n}"><td>{n}</td><td>{item}</td>'
                f"<td>{rng.choice(_REGIONS)}</td>"
                f'<td class="num">{rng.randint(100, 99999):,}</td>'
                f'<td><span class="{trend}" style="color:{color}">{change:+.1f}%</span></td>'
                f"<td>2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}</td></tr>"
            )
        body = "\n".join(rows)
        return (
            "<!-- data table -->\n"
            '<div class="table-wrap" id="figures-table" style="overflow-x:auto;margin:2em 0">\n'
            f'<table class="data-table" data-role="sortable">\n<caption>{self.label(2, 4)}'
            "</caption>\n<thead><tr><th>#</th><th>Item</th><th>Region</th>"
            '<th class="num">Volume</th><th>Change</th><th>Updated</th></tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>\n</div>\n"
        )

    def form(self, home: str) -> str:
        rng = self.rng
        topics = "".join(
            f'<option value="t{n}">{self.label(1, 2)}</option>' for n in range(rng.randint(4, 9))
        )
        return (
            "<!-- sign-up form -->\n"
            f'<form class="signup" id="signup" action="{self.url(home)}" method="post" '
            'data-track="signup">\n<fieldset><legend>Stay in touch</legend>\n'
            '<label for="su-name">Name</label> '
            '<input type="text" id="su-name" name="name" placeholder="Your name" required>\n'
            '<label for="su-email">E-mail</label> '
            '<input type="email" id="su-email" name="email" placeholder="you&#64;example">\n'
            '<label for="su-topic">Topic</label> <select id="su-topic" name="topic">'
            f'<option value="">Choose&hellip;</option>{topics}</select>\n'
            '<label><input type="checkbox" name="weekly" checked> Weekly digest</label>\n'
            '<button type="submit" class="btn btn-primary" style="margin-left:.5em">'
            "Subscribe</button>\n</fieldset>\n</form>\n"
        )

    def footer(self) -> str:
        rng = self.rng
        columns = []
        for n in range(rng.randint(3, 5)):
            links = "".join(f"<li>{self.link()}</li>" for _ in range(rng.randint(4, 7)))
            columns.append(
                f'<div class="footer-col" data-id="fc{n}"><h4>{self.label(1, 2)}</h4>'
                f"<ul>{links}</ul></div>"
            )
        return (
            "<!-- site footer -->\n"
            '<footer class="site-footer" id="footer" data-role="contentinfo">\n'
            f'<div class="footer-columns">\n{chr(10).join(columns)}\n</div>\n'
            '<p class="legal">&copy; 2024 Demo Site &middot; All rights reserved &middot; '
            '<a href="#top">Back to top</a></p>\n</footer>\n'
        )

    def json_ld(self, home: str) -> str:
        rng = self.rng
        data = {
            "@context": "https://schema.org",
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": 1, "name": "Home", "item": home},
                {
                    "@type": "ListItem",
                    "position": 2,
                    "name": self.label(1, 3),
                    "item": rng.choice(self.others),
                },
            ],
        }
        data_text = json.dumps(data, ensure_ascii=False)
        return f'\n<script type="application/ld+json">{data_text}</script>'

    def scripts(self) -> str:
        rng = self.rng
        config = {
            "pageId": f"pg-{rng.getrandbits(32):08x}",
            "variant": rng.choice("abcd"),
            "bucket": rng.randrange(100),
            "related": rng.choices(self.others, k=rng.randint(3, 8)),
            "labels": [self.label(1, 2) for _ in range(rng.randint(3, 6))],
        }
        return (
            f"<script>\n{_SCRIPT_BUNDLE}</script>\n"
            "<script>\nwindow.dataLayer = window.dataLayer || [];\n"
            f"window.dataLayer.push({{event: 'page_view', config: "
            f"{json.dumps(config, ensure_ascii=False)}}});\n</script>\n"
        )


_STYLE_BLOCK = """<style>
/* layout */
:root { --accent: #0b5fff; --text: #1f2328; --muted: #57606a; --line: #d0d7de; }
html { font-size: 16px; }
body { margin: 0; color: var(--text); font: 1rem/1.5 system-ui, -apple-system, sans-serif; }
.page-wrap { max-width: 1200px; margin: 0 auto; padding: 0 16px; }
.site-header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px;
  border-bottom: 1px solid var(--line); padding: 12px 0; }
.skip-link { position: absolute; left: -999px; }
.skip-link:focus { left: 8px; top: 8px; background-color: #fff; padding: 4px 8px; }
.brand-name { font-weight: 700; font-size: 1.25rem; color: var(--text); }
.mega-menu .menu { display: flex; gap: 24px; list-style: none; margin: 0; padding: 0; }
.mega-menu .submenu { display: none; position: absolute; min-width: 220px; padding: 8px;
  background-color: #fff; box-shadow: 0 8px 24px rgba(140, 149, 159, .2); }
.mega-menu .menu-group:hover .submenu, .mega-menu .menu-group.open .submenu { display: block; }
.menu-title { font-weight: 600; cursor: pointer; }
.menu-toggle { display: none; }
.breadcrumb ol { display: flex; gap: 6px; list-style: none; padding: 0; color: var(--muted); }
.breadcrumb li + li::before { content: "/"; margin-right: 6px; color: var(--line); }
.toc { float: right; width: 260px; margin: 0 0 16px 16px; padding: 12px;
  border: 1px solid var(--line); border-radius: 6px; }
.toc ol { margin: 0; padding-left: 20px; }
.article-section h2 { margin-top: 2em; border-bottom: 1px solid var(--line); }
.hl { background-color: #fff8c5; } .term { font-variant: small-caps; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; background-color: #ddf4ff; }
.muted { color: var(--muted); } .kbd { font-family: ui-monospace, monospace; }
.tag { color: #8250df; }
.data-table { border-collapse: collapse; width: 100%; }
.data-table th, .data-table td { border: 1px solid var(--line); padding: 4px 8px; }
.data-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #1a7f37; } .down { color: #cf222e; }
.signup fieldset { border: 1px solid var(--line); border-radius: 6px; }
.btn { border: 1px solid var(--line); border-radius: 6px; padding: 4px 12px; }
.btn-primary { background-color: var(--accent); color: #fff; }
.site-footer { margin-top: 48px; padding: 24px 0; border-top: 1px solid var(--line); }
.footer-columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); }
@media (max-width: 720px) {
  .menu-toggle { display: inline-block; }
  .mega-menu .menu { display: none; flex-direction: column; }
  .mega-menu.open .menu { display: flex; }
  .toc { float: none; width: auto; margin: 0 0 16px; }
}
</style>"""

_SCRIPT_BUNDLE = """(function () {
  'use strict';
  var doc = document;
  function each(selector, fn) {
    Array.prototype.forEach.call(doc.querySelectorAll(selector), fn);
  }
  function toggleMenu(button) {
    var nav = button.closest('.mega-menu');
    var open = nav.classList.toggle('open');
    button.setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  function sortTable(table, column, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].textContent.replace(/[^0-9.+-]/g, '');
      var y = b.cells[column].textContent.replace(/[^0-9.+-]/g, '');
      var d = (parseFloat(x) || 0) - (parseFloat(y) || 0);
      return descending ? -d : d;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  function trackClick(event) {
    var target = event.target.closest('[data-track]');
    if (!target) { return; }
    window.dataLayer = window.dataLayer || [];
    window.dataLayer.push({ event: 'click', track: target.getAttribute('data-track') });
  }
  function highlightToc() {
    var current = null;
    each('.article-section', function (section) {
      if (section.getBoundingClientRect().top < 120) { current = section.id; }
    });
    each('.toc a', function (link) {
      link.classList.toggle('active', link.getAttribute('href') === '#' + current);
    });
  }
  function validate(form) {
    var ok = true;
    each('#' + form.id + ' [required]', function (field) {
      var empty = !field.value || !field.value.trim();
      field.classList.toggle('invalid', empty);
      ok = ok && !empty;
    });
    return ok;
  }
  doc.addEventListener('DOMContentLoaded', function () {
    each('.menu-toggle', function (button) {
      button.addEventListener('click', function () { toggleMenu(button); });
    });
    each('.menu-group', function (group) {
      group.addEventListener('mouseenter', function () { group.classList.add('open'); });
      group.addEventListener('mouseleave', function () { group.classList.remove('open'); });
    });
    each('table[data-role="sortable"] th', function (th, index) {
      var descending = false;
      th.addEventListener('click', function () {
        descending = !descending;
        sortTable(th.closest('table'), index, descending);
      });
    });
    each('form.signup', function (form) {
      form.addEventListener('submit', function (event) {
        if (!validate(form)) { event.preventDefault(); }
      });
    });
    doc.addEventListener('click', trackClick);
    window.addEventListener('scroll', highlightToc, { passive: true });
    highlightToc();
  });
})();
"""
