"""The browser check's fixture site: every image markup kind and trap, with expectations.

``build_site(origin)`` is pure: it returns the files to serve (keyed by decoded URL path)
and, for every image, whether headless Chromium should load it at one of the check's
viewports, whether our extraction should report it, and whether it is a real image.
Writing the expectations down next to the markup means a harness bug (a lazy-loading
script that never ran, a viewport that never picked a ``<picture>`` branch, a server
that answers the wrong file) fails the check instead of producing a perfect score.

Pages and what each covers:
    /index.html          img src (png, jpg, gif, svg), input type=image, video poster,
                         inline svg <image href> and xlink:href, <object>, <embed>, an
                         iframe showing an image, <a href=photo.jpg>, icons,
                         a 404 favicon, og:image, twitter:image, an empty og:image, iframe
    /responsive.html     srcset with w and x descriptors, sizes, a comma in a URL, odd
                         whitespace, <picture> with media, type and an unsupported type
    /lazy.html           data-src, data-srcset, data-lazy-src, data-original (a data:
                         placeholder in src, a lazysizes-like script), loading=lazy far down
    /css.html            style attributes (quotes, escapes, entities), <style> blocks
                         (background, layers, image-set, list-style-image, content, border-
                         image, mask-image), an external sheet with @import, traps, and
                         rules that match no element, need :hover, or are for print
    /urls.html           <base href>, relative, root-relative, protocol-relative, absolute,
                         entities, a query, non-ASCII, space, tab, fragment, a//b
    /legacy-1252.html    windows-1252 by <meta charset>
    /bom.html            UTF-8 byte order mark that overrides a wrong <meta charset>
    /malformed.html      unclosed and upper-case tags, duplicate attributes, stray </html>
    /frameset.html       <frameset>: /frames/left.html and /frame.html
    /frame.html          the iframe document of /index.html (also a <frame> above)

Pages whose images or links scripts make (``needs_render``: found only when the check's
render mode renders that page; static extraction must not report them), each seen by
Chromium at one viewport (nothing on them depends on its size):
    /scripts/gallery.html    a gallery built from a JavaScript array (createElement('img'))
    /scripts/slider.html     a slider built by innerHTML from an array, a cloned slide, a
                             <style> background of the slides (no slide in the markup)
    /scripts/lazy.html       a scroll-position lazy loader: new Image() 2400px down, no data-*
    /scripts/menu.html       a menu built by a script (createElement('a')) linking to
                             /scripts/menu/spring.html and autumn.html, which no markup
                             links to: their own (static) images need the menu rendered
    /scripts/json.html       items fetched as JSON with fetch() and put in the DOM
    /scripts/analytics.html  an analytics-like script that builds nothing: ``auto`` must
                             not render it
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from typing import Any

from PIL import Image, ImageDraw

from tests.browser_site.check import FixtureImage, FixturePage, Probe, Site

PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
IMAGE_SIZE = (48, 32)

# What a lazy-loading library (lazysizes, jQuery lazyload) does once an image nears the
# viewport: copy the data-* attributes into src and srcset. Ours does it at once, so the
# browser loads every lazy image whatever the viewport.
LAZY_SCRIPT = """<script>
(function () {
  var names = ["data-src", "data-lazy-src", "data-original"];
  var nodes = document.querySelectorAll(
    "[data-src], [data-lazy-src], [data-original], [data-srcset]");
  for (var i = 0; i < nodes.length; i++) {
    var node = nodes[i];
    if (node.hasAttribute("data-srcset")) {
      node.setAttribute("srcset", node.getAttribute("data-srcset"));
    }
    for (var j = 0; j < names.length; j++) {
      if (node.hasAttribute(names[j])) {
        node.setAttribute("src", node.getAttribute(names[j]));
        break;
      }
    }
  }
})();
</script>"""

NAV = """<nav><ul>
<li><a href="/index.html">Home</a></li>
<li><a href="/responsive.html">Responsive images</a></li>
<li><a href="/lazy.html">Lazy loading</a></li>
<li><a href="/css.html">CSS images</a></li>
<li><a href="/urls.html">URL spellings</a></li>
<li><a href="/legacy-1252.html">windows-1252</a></li>
<li><a href="/bom.html">Byte order mark</a></li>
<li><a href="/malformed.html">Malformed HTML</a></li>
<li><a href="/frameset.html">Frameset</a></li>
<li><a href="/scripts/gallery.html">Script gallery</a></li>
<li><a href="/scripts/slider.html">Script slider</a></li>
<li><a href="/scripts/lazy.html">Script lazy loader</a></li>
<li><a href="/scripts/menu.html">Script menu</a></li>
<li><a href="/scripts/json.html">Script JSON content</a></li>
<li><a href="/scripts/analytics.html">Analytics only</a></li>
</ul></nav>"""


class _Builder:
    """Collects files and image expectations as the pages are written."""

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.files: dict[str, bytes] = {}
        self.images: list[FixtureImage] = []
        self.pages: list[FixturePage] = []
        self.probes: list[Probe] = []

    def image(
        self,
        path: str,
        loaded: bool | None = True,
        found: bool | None = True,
        why: str = "",
        needs_render: str | None = None,
    ) -> None:
        """A real image at ``path`` (query ignored by the server), drawn from its name;
        ``needs_render``: the page whose render finds it (static extraction does not)."""
        self.files[path.split("?")[0]] = draw(path)
        self.images.append(FixtureImage(path, loaded, found, True, why, False, needs_render))

    def missing(self, path: str, why: str) -> None:
        """A reference that 404s on purpose: found, never loaded, never real."""
        self.images.append(FixtureImage(path, False, True, False, why, broken=True))

    def page(
        self,
        path: str,
        html: str,
        via: str = "link",
        encoding: str = "utf-8",
        **script: Any,
    ) -> None:
        """``script``: FixturePage's fields for script pages (needs_render, auto, ...)."""
        self.files[path] = html.encode(encoding)
        self.pages.append(FixturePage(path, via, **script))

    def text(self, path: str, text: str) -> None:
        self.files[path] = text.encode()

    def site(self) -> Site:
        return Site(files=self.files, images=self.images, pages=self.pages, probes=self.probes)


def draw(path: str) -> bytes:
    """A small image that differs per path (colours and shapes seeded by it), in the
    format its extension names, so that every fixture image is a distinct real file."""
    rng = random.Random(hashlib.sha256(path.encode()).digest())
    ext = path.split("?")[0].rsplit(".", 1)[-1].lower()
    if ext == "svg":
        colour = f"#{rng.randrange(1 << 24):06x}"
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="32">'
            f'<rect width="48" height="32" fill="{colour}"/></svg>\n'
        ).encode()
    img = Image.new("RGB", IMAGE_SIZE, _colour(rng))
    canvas = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = rng.randrange(40), rng.randrange(24)
        canvas.ellipse([x, y, x + 8, y + 8], fill=_colour(rng))
    formats = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WEBP", "ico": "ICO"}
    buffer = io.BytesIO()
    img.save(buffer, format=formats[ext])
    return buffer.getvalue()


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _html(title: str, body: str, head: str = "", charset: str = "utf-8") -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head>\n<meta charset="{charset}">\n<title>{title}</title>\n'
        f"{head}\n</head>\n<body>\n<h1>{title}</h1>\n{NAV}\n{body}\n</body>\n</html>\n"
    )


def build_site(origin: str) -> Site:
    """The fixture site for a server at ``origin`` (``http://127.0.0.1:PORT``)."""
    b = _Builder(origin)
    _index(b)
    _responsive(b)
    _lazy(b)
    _css(b)
    _urls(b)
    _encodings(b)
    _malformed(b)
    _frames(b)
    _scripts(b)
    _probes(b)
    return b.site()


def _index(b: _Builder) -> None:
    for path in (
        "/images/basic/plain.png",
        "/images/basic/photo-small.jpg",
        "/images/basic/anim.gif",
        "/images/basic/vector.svg",
        "/images/basic/submit.png",
        "/images/basic/poster.jpg",
        "/images/basic/svg-href.png",
        "/images/basic/svg-xlink.png",
    ):
        b.image(path)
    b.image("/images/basic/object.png", why="<object data type=image/png>")
    b.image("/images/basic/embed.svg", why="<embed src=...svg>")
    b.image("/images/basic/framed.jpg", why="<iframe src=...jpg>: the frame shows the image")
    b.image("/images/basic/photo-full.jpg", loaded=False, why="<a href>: a link, not shown")
    b.image("/icons/favicon.ico", loaded=None, why="icon: browser chrome, headless may skip")
    b.image("/icons/apple-touch-icon.png", loaded=None, why="apple-touch-icon: never loaded")
    b.missing("/icons/missing-favicon.ico", "trap: a favicon link that 404s")
    b.image("/images/meta/og.jpg", loaded=False, why="og:image: for link previews only")
    b.image("/images/meta/twitter.png", loaded=False, why="twitter:image: link previews only")
    head = """<link rel="icon" href="icons/favicon.ico">
<link rel="apple-touch-icon" href="/icons/apple-touch-icon.png">
<link rel="shortcut icon" href="icons/missing-favicon.ico">
<meta property="og:image" content="images/meta/og.jpg">
<meta name="twitter:image" content="/images/meta/twitter.png">
<meta property="og:image" content="">"""
    body = """<p>Every kind of image markup, one page per family.</p>
<img src="images/basic/plain.png" alt="plain" width="48" height="32">
<img src="images/basic/photo-small.jpg" alt="photo">
<img src="images/basic/anim.gif" alt="gif">
<img src="images/basic/vector.svg" alt="vector" width="48" height="32">
<form><input type="image" src="images/basic/submit.png" alt="Go"></form>
<video poster="images/basic/poster.jpg" width="96" height="64"></video>
<svg width="100" height="40" xmlns:xlink="http://www.w3.org/1999/xlink">
  <image href="images/basic/svg-href.png" width="48" height="32"/>
  <image xlink:href="images/basic/svg-xlink.png" x="50" width="48" height="32"/>
</svg>
<object data="images/basic/object.png" type="image/png" width="48" height="32"></object>
<embed src="images/basic/embed.svg" type="image/svg+xml" width="48" height="32">
<iframe src="images/basic/framed.jpg" width="60" height="40" title="an image"></iframe>
<p><a href="images/basic/photo-full.jpg">The full-size photo</a></p>
<iframe src="frame.html" width="320" height="120" title="frame"></iframe>"""
    b.page("/index.html", _html("Browser check fixtures", body, head))


def _responsive(b: _Builder) -> None:
    for width in (320, 640, 1280, 2560, 3840):
        b.image(f"/images/resp/w-{width}.png", loaded=None, why="w candidate: Chromium picks")
    for density in (1, 2, 3):
        b.image(f"/images/resp/x-{density}.png", why=f"x descriptor, {density}x viewport")
    b.image("/images/resp/comma,1x.png", why="a comma inside a srcset URL")
    b.image("/images/resp/comma,2x.png", why="a comma inside a srcset URL")
    b.image("/images/resp/space-1x.png", why="newlines and tabs around candidates")
    b.image("/images/resp/space-2x.png", why="newlines and tabs around candidates")
    b.image(
        "/images/resp/pic-unsupported.png",
        loaded=False,
        why="trap: <source type> Chromium does not support is skipped (found is fine)",
    )
    b.image("/images/resp/pic-wide.webp", why="<source media=(min-width: 1600px)>")
    b.image("/images/resp/pic-mid.webp", why="<source media=(min-width: 1000px)>")
    b.image("/images/resp/pic-fallback.png", why="<img> fallback: no <source> matches")
    for width in (800, 1600):
        b.image(f"/images/resp/pic2-{width}.webp", loaded=None, why="w candidate in <source>")
    b.image("/images/resp/pic2-fallback.jpg", why="<img> fallback of a w <source>")
    body = """<img src="images/resp/w-640.png" alt="w descriptors"
     srcset="images/resp/w-320.png 320w, images/resp/w-640.png 640w,
             images/resp/w-1280.png 1280w, images/resp/w-2560.png 2560w,
             images/resp/w-3840.png 3840w"
     sizes="(max-width: 600px) 100vw, 50vw">
<img src="images/resp/x-1.png" alt="x descriptors"
     srcset="images/resp/x-1.png 1x, images/resp/x-2.png 2x, images/resp/x-3.png 3x">
<img alt="comma" srcset="images/resp/comma,1x.png 1x, images/resp/comma,2x.png 2x">
<img alt="whitespace" srcset="
\t  images/resp/space-1x.png \t 1x ,
        images/resp/space-2x.png\t2x
">
<picture>
  <source srcset="images/resp/pic-unsupported.png" type="image/x-not-a-format">
  <source srcset="images/resp/pic-wide.webp" media="(min-width: 1600px)" type="image/webp">
  <source srcset="images/resp/pic-mid.webp" media="(min-width: 1000px)" type="image/webp">
  <img src="images/resp/pic-fallback.png" alt="picture">
</picture>
<picture>
  <source media="(min-width: 1000px)" type="image/webp" sizes="50vw"
          srcset="images/resp/pic2-800.webp 800w, images/resp/pic2-1600.webp 1600w">
  <img src="images/resp/pic2-fallback.jpg" alt="picture with w descriptors">
</picture>"""
    b.page("/responsive.html", _html("Responsive images", body))


def _lazy(b: _Builder) -> None:
    b.image("/images/lazy/data-src.png", why="data-src, copied by the lazy script")
    b.image("/images/lazy/srcset-1x.png", why="data-srcset 1x")
    b.image("/images/lazy/srcset-2x.png", why="data-srcset 2x")
    b.image("/images/lazy/lazy-src.png", why="data-lazy-src")
    b.image("/images/lazy/original.jpg", why="data-original")
    b.image("/images/lazy/pic-wide.webp", why="<source data-srcset> in <picture>")
    b.image("/images/lazy/pic-narrow.png", why="<img data-src> in <picture>")
    b.image("/images/lazy/native-far.png", why="loading=lazy 2400px down: tall viewports")
    body = f"""<img src="{PLACEHOLDER}" data-src="images/lazy/data-src.png" class="lazyload" alt="">
<img src="{PLACEHOLDER}" alt=""
     data-srcset="images/lazy/srcset-1x.png 1x, images/lazy/srcset-2x.png 2x">
<img src="{PLACEHOLDER}" data-lazy-src="images/lazy/lazy-src.png" alt="">
<img src="{PLACEHOLDER}" data-original="images/lazy/original.jpg" alt="">
<picture>
  <source data-srcset="images/lazy/pic-wide.webp" media="(min-width: 1000px)"
          type="image/webp">
  <img src="{PLACEHOLDER}" data-src="images/lazy/pic-narrow.png" alt="">
</picture>
<div style="height: 2400px">Spacer.</div>
<img loading="lazy" src="images/lazy/native-far.png" width="48" height="32" alt="far">
{LAZY_SCRIPT}"""
    b.page("/lazy.html", _html("Lazy loading", body))


def _css(b: _Builder) -> None:
    for name in (
        "inline-single.png",
        "inline-double.png",
        "inline-bare.png",
        "esc(paren).png",
        "inline-entity.png",
        "block-bg.png",
        "layer-top.png",
        "layer-bottom.png",
        "set-1x.png",
        "set-2x.png",
        "bullet.png",
        "before.png",
        "border.png",
        "mask.png",
    ):
        b.image(f"/images/css/{name}", why="CSS")
    b.image("/images/sheet/from-sheet.png", why="external sheet, ../ from css/")
    b.image("/css/img/next-to-sheet.png", why="external sheet, relative to the sheet")
    b.image("/css/sub/deep.png", why="@import-ed sheet, relative to that sheet")
    b.image("/images/sheet/first-item.png", why="sheet rule: li:first-child::before")
    b.image("/images/sheet/nested.png", why="sheet rule in CSS nesting (& .inner)")
    b.image("/images/sheet/attribute.png", why="sheet rule with an attribute selector")
    b.image("/images/css/not-hovered.png", why="inline rule: :not(:hover) matches")
    for name, why in STYLE_RULE_TRAPS.items():
        b.image(f"/images/trap/{name}", loaded=False, found=False, why=f"trap: {why}")
    b.image(
        "/images/trap/overridden.png",
        loaded=False,
        found=False,
        why="trap: url() overridden by a later gradient in the same rule",
    )
    b.image(
        "/images/trap/alternate.png",
        loaded=False,
        found=False,
        why="trap: only in a rel='alternate stylesheet' sheet, which is not applied",
    )
    for name, why in (
        ("later-rule.png", "a later rule for the same element sets background: none"),
        ("media-miss.png", "inside @media that matches no viewport"),
        ("display-none.png", "background of a display:none element"),
    ):
        b.image(
            f"/images/unshown/{name}",
            loaded=False,
            found=None,
            why=f"not shown: {why} (reporting it costs 'shown', not precision)",
        )
    b.files["/fonts/trap-font.svg"] = SVG_FONT
    b.images.append(
        FixtureImage(
            "/fonts/trap-font.svg", False, False, True, "trap: @font-face SVG font, not an image"
        )
    )
    b.text(
        "/css/site.css",
        """@import url("sub/more.css");
.sheet-bg { background-image: url(../images/sheet/from-sheet.png); width: 48px; height: 32px }
.sheet-local { background: url("img/next-to-sheet.png") no-repeat; width: 48px; height: 32px }
.sheet-list > li:first-child::before { content: url(../images/sheet/first-item.png) }
.sheet-nest { & .inner { background: url(../images/sheet/nested.png); width: 48px; height: 32px } }
[data-tile="wide"] { background: url(../images/sheet/attribute.png); width: 48px; height: 32px }
/* rules that match no element of any page, or only on user action, or in print */
.no-such-element { background: url(../images/trap/unmatched-sheet.png) }
.sheet-bg:hover { background-image: url(../images/trap/hover-sheet.png) }
.sheet-local:focus, .sheet-local:active { background: url(../images/trap/focus-sheet.png) }
.ghost::before { content: url(../images/trap/pseudo-unmatched.png) }
.sheet-list > li:nth-child(5) { list-style-image: url(../images/trap/nth-unmatched.png) }
@media print { .sheet-bg { background-image: url(../images/trap/print-sheet.png) } }
""",
    )
    b.text("/css/print.css", ".box { background: url(../images/trap/print-link.png) }\n")
    b.text("/css/sub/more.css", ".imported { background: url(deep.png); height: 32px }\n")
    b.text(
        "/css/alt.css",
        ".alt-target { background-image: url(../images/trap/alternate.png) }\n",
    )
    head = """<link rel="stylesheet" href="css/site.css">
<link rel="alternate stylesheet" href="css/alt.css" title="Alternative">
<link rel="stylesheet" href="css/print.css" media="print">
<style media="print">.box { background: url(images/trap/print-style.png) }</style>
<style>
@font-face { font-family: "TrapFont"; src: url("fonts/trap-font.svg#TrapFont") format("svg"); }
.font-user { font-family: "TrapFont", serif }
.box { width: 48px; height: 32px }
.block-bg { background: #eee url(images/css/block-bg.png) no-repeat }
.layers { background: url(images/css/layer-top.png) no-repeat, url('images/css/layer-bottom.png') }
.set { background-image: image-set("images/css/set-1x.png" 1x, "images/css/set-2x.png" 2x) }
ul.bullets { list-style-image: url('images/css/bullet.png') }
.before::before { content: url("images/css/before.png") }
.framed { border: 12px solid transparent; border-image: url(images/css/border.png) 12 round }
.masked { background: #333; mask-image: url(images/css/mask.png) }
/* the gradient wins: the browser never fetches the first url() */
.overridden { background: url(images/trap/overridden.png); background: linear-gradient(#fff, #000) }
.later { background: url(images/unshown/later-rule.png) }
.later { background: none }
@media (max-width: 1px) { .media-miss { background: url(images/unshown/media-miss.png) } }
.display-none { display: none; background: url(images/unshown/display-none.png) }
.unmatched-inline .box { background: url(images/trap/unmatched-inline.png) }
.box.framed:hover { border-image: url(images/trap/hover-inline.png) 12 round }
.masked:not(:hover) { background-image: url(images/css/not-hovered.png) }
</style>"""
    body = r"""<div class="box" style="background-image:url('images/css/inline-single.png')"></div>
<div class="box" style='background-image:url("images/css/inline-double.png")'></div>
<div class="box" style="background-image:url(images/css/inline-bare.png)"></div>
<div class="box" style="background-image:url(images/css/esc\28 paren\29 .png)"></div>
<div class="box" style="background-image: URL( &quot;images/css/inline-entity.png&quot; )"></div>
<div class="box block-bg"></div>
<div class="box layers"></div>
<div class="box set"></div>
<ul class="bullets"><li>one</li><li>two</li></ul>
<p class="before">After the generated image.</p>
<div class="box framed"></div>
<div class="box masked"></div>
<div class="box overridden"></div>
<div class="sheet-bg"></div>
<div class="sheet-local"></div>
<div class="imported"></div>
<div class="box alt-target"></div>
<p class="font-user">abc in the SVG font, which Chromium does not support.</p>
<div class="box later"></div>
<div class="box media-miss"></div>
<div class="box display-none"></div>
<ul class="sheet-list"><li>first</li><li>second</li></ul>
<div class="sheet-nest"><div class="inner"></div></div>
<div data-tile="wide"></div>"""
    b.page("/css.html", _html("CSS images", body, head))


# Style rules a browser does not apply to the fixture's pages (their images are real
# files, so reporting one costs precision only through the expectations).
STYLE_RULE_TRAPS = {
    "unmatched-sheet.png": "sheet rule whose selector matches no element",
    "hover-sheet.png": "sheet rule that needs :hover",
    "focus-sheet.png": "sheet rule that needs :focus or :active",
    "pseudo-unmatched.png": "::before of an element no page has",
    "nth-unmatched.png": "li:nth-child(5) of a two-item list",
    "print-sheet.png": "sheet rule inside @media print",
    "print-link.png": "a <link rel=stylesheet media=print>",
    "print-style.png": "a <style media=print>",
    "unmatched-inline.png": "<style> rule whose selector matches no element",
    "hover-inline.png": "<style> rule that needs :hover",
}


SVG_FONT = b"""<svg xmlns="http://www.w3.org/2000/svg"><defs>
<font id="TrapFont" horiz-adv-x="500"><font-face font-family="TrapFont" units-per-em="1000"/>
<glyph unicode="a" d="M0 0h500v500H0z"/></font>
</defs></svg>
"""


def _urls(b: _Builder) -> None:
    for path, why in (
        ("/urls/base/relative.png", "relative to <base href>"),
        ("/urls/up.png", "../ from <base href>"),
        ("/images/urls/root.png", "root-relative"),
        ("/images/urls/protocol.png", "protocol-relative //127.0.0.1:PORT/"),
        ("/images/urls/absolute.png", "absolute http://127.0.0.1:PORT/"),
        ("/images/urls/query.png?size=small&v=2", "&amp; in the query"),
        ("/images/urls/entity.png", "&#105; in the path"),
        ("/images/urls/café.png", "non-ASCII file name"),
        ("/images/urls/with space.png", "space in the file name"),
        ("/images/urls/pre encoded.png", "already %20-encoded in the markup"),
        ("/images//double-slash.png", "a//b: a distinct URL from a/b"),
        ("/images/urls/padded.png", "spaces around the attribute value"),
        ("/images/urls/tabbed.png", "a tab inside the URL, which browsers delete"),
        ("/images/urls/UPPER.PNG", "upper-case extension"),
        ("/images/urls/fragment.png", "#fragment dropped"),
        ("/urls/base/inline-style.png", "style attribute url() against <base href>"),
    ):
        b.image(path, why=why)
    proto = b.origin.split(":", 1)[1]  # //127.0.0.1:PORT
    body = f"""<img src="relative.png" alt="">
<img src="../up.png" alt="">
<img src="/images/urls/root.png" alt="">
<img src="{proto}/images/urls/protocol.png" alt="">
<img src="{b.origin}/images/urls/absolute.png" alt="">
<img src="/images/urls/query.png?size=small&amp;v=2" alt="">
<img src="/images/urls/ent&#105;ty.png" alt="">
<img src="/images/urls/café.png" alt="">
<img src="/images/urls/with space.png" alt="">
<img src="/images/urls/pre%20encoded.png" alt="">
<img src="/images//double-slash.png" alt="">
<img src="   /images/urls/padded.png  " alt="">
<img src="/images/urls/tab&#9;bed.png" alt="">
<img src="/images/urls/UPPER.PNG" alt="">
<img src="/images/urls/fragment.png#part" alt="">
<div style="background-image: url(inline-style.png); width: 48px; height: 32px"></div>"""
    b.page("/urls.html", _html("URL spellings", body, '<base href="/urls/base/">'))


def _encodings(b: _Builder) -> None:
    b.image("/images/enc/cp1252-€uro.png", why="windows-1252 bytes 0x80, decoded as €")
    b.image("/images/enc/naïve.png", why="windows-1252 byte 0xEF")
    body = """<p>Ce fichier est encodé en windows-1252 (€).</p>
<img src="images/enc/cp1252-€uro.png" alt="">
<img src="images/enc/naïve.png" alt="">"""
    b.page(
        "/legacy-1252.html",
        _html("windows-1252", body, charset="windows-1252"),
        encoding="cp1252",
    )
    b.image("/images/enc/bom-über.png", why="UTF-8 page with a BOM and a wrong <meta>")
    body = '<p>Grüße: the byte order mark wins.</p>\n<img src="images/enc/bom-über.png" alt="">'
    b.page("/bom.html", _html("Byte order mark", body, charset="windows-1252"), "link", "utf-8-sig")


def _malformed(b: _Builder) -> None:
    for name, why in (
        ("UPPER-TAG.png", "<IMG SRC=...>"),
        ("unquoted.png", "unquoted attribute, unclosed table"),
        ("nested-unclosed.png", "inside unclosed <p><b><i>"),
        ("dup-first.png", "first of two src attributes: browsers keep the first"),
        ("input-upper.png", "<INPUT TYPE=IMAGE>"),
        ("after-html.png", "after a stray </html>"),
        ("after-body.png", "after </body></html>"),
    ):
        b.image(f"/images/mal/{name}", why=why)
    b.image(
        "/images/mal/dup-second.png",
        loaded=False,
        found=False,
        why="trap: second src attribute, ignored",
    )
    b.image("/images/mal/commented.png", loaded=False, found=False, why="trap: in a comment")
    b.image("/images/mal/in-script.png", loaded=False, found=False, why="trap: in a script")
    b.image(
        "/images/mal/noscript.png",
        loaded=False,
        found=None,
        why="<noscript>: not loaded with scripts on; reporting it is fine",
    )
    b.image(
        "/images/mal/template.png",
        loaded=False,
        found=False,
        why="trap: <template> content is inert, never shown until a script copies it",
    )
    html = (
        """<!DOCTYPE html>
<HTML><HEAD><META CHARSET="utf-8"><TITLE>Malformed HTML</TITLE></HEAD>
<BODY>
<h1>Malformed HTML</h1>
"""
        + NAV
        + """
<DIV><P><IMG SRC="images/mal/UPPER-TAG.png" ALT="upper">
<table><tr><td><img src=images/mal/unquoted.png alt=unquoted></table>
<p>unclosed <b>bold <i>italic <img src="images/mal/nested-unclosed.png">
<img src="images/mal/dup-first.png" src="images/mal/dup-second.png" alt="dup">
<!-- <img src="images/mal/commented.png"> -->
<script>var markup = '<img src="images/mal/in-script.png">';</script>
<noscript><img src="images/mal/noscript.png"></noscript>
<template><img src="images/mal/template.png"></template>
<FORM><INPUT TYPE="IMAGE" SRC="images/mal/input-upper.png" ALT="go"></FORM>
</html>
<img src="images/mal/after-html.png">
</body></html>
<img src="images/mal/after-body.png">
"""
    )
    b.page("/malformed.html", html)


def _frames(b: _Builder) -> None:
    b.image("/images/frame/in-iframe.png", why="<img> in the iframe document")
    b.image("/images/frame/iframe-bg.png", why="style attribute in the iframe document")
    b.image("/images/frame/left.png", why="<img> in a <frame> document")
    b.image("/images/frame/left-1x.png", why="srcset 1x in a <frame> document")
    b.image("/images/frame/left-2x.png", why="srcset 2x in a <frame> document")
    b.page(
        "/frame.html",
        """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Frame</title></head><body>
<img src="images/frame/in-iframe.png" alt="">
<div style="background-image: url(images/frame/iframe-bg.png); width: 48px; height: 32px"></div>
</body></html>
""",
        via="iframe",
    )
    b.page(
        "/frameset.html",
        """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Frameset</title></head>
<frameset cols="50%,50%">
  <frame src="frames/left.html">
  <frame src="frame.html">
</frameset>
</html>
""",
    )
    b.page(
        "/frames/left.html",
        """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Left</title></head><body>
<img src="../images/frame/left.png" alt="">
<img srcset="../images/frame/left-1x.png 1x, ../images/frame/left-2x.png 2x" alt="">
</body></html>
""",
        via="frame",
    )


# The pages whose images and links scripts make. Their script-made images have
# ``needs_render`` set: static extraction does not report them (the check asserts that),
# a render of the page does. No image URL appears whole in these scripts' text, as on
# most sites: the URLs are put together from a folder and a name.
GALLERY = "/scripts/gallery.html"
SLIDER = "/scripts/slider.html"
SCRIPT_LAZY = "/scripts/lazy.html"
MENU = "/scripts/menu.html"
MENU_PAGES = ("/scripts/menu/spring.html", "/scripts/menu/autumn.html")
JSON_PAGE = "/scripts/json.html"
ANALYTICS = "/scripts/analytics.html"
SCRIPT_PAGES = (GALLERY, SLIDER, SCRIPT_LAZY, MENU, JSON_PAGE)  # auto must render these

GALLERY_SCRIPT = """<script>
(function () {
  var photos = [
    {name: "harbour", ext: "jpg", alt: "The harbour"},
    {name: "lighthouse", ext: "png", alt: "The lighthouse"},
    {name: "dunes", ext: "jpg", alt: "The dunes"},
    {name: "pier", ext: "gif", alt: "The pier"}
  ];
  var box = document.getElementById("gallery");
  photos.forEach(function (photo) {
    var img = document.createElement("img");
    img.src = "/images/script/gallery/" + photo.name + "." + photo.ext;
    img.alt = photo.alt;
    img.width = 48;
    img.height = 32;
    box.appendChild(img);
  });
})();
</script>"""

SLIDER_SCRIPT = """<script>
(function () {
  var folder = "/images/script/slider/";
  var slides = [["one", "jpg"], ["two", "png"], ["three", "webp"]];
  var track = document.querySelector(".slider-track");
  track.innerHTML = slides.map(function (slide) {
    return '<div class="slide"><img src="' + folder + slide[0] + "." + slide[1] +
      '" alt="" width="48" height="32"></div>';
  }).join("");
  // An endless slider's trick: the first slide cloned after the last.
  track.appendChild(track.firstElementChild.cloneNode(true));
})();
</script>"""

# A scroll-position lazy loader (as lazy loaders were before IntersectionObserver, and
# many still are): on load and on every scroll, the figures within a screen of the
# viewport get their image. (An IntersectionObserver's callbacks wait for a rendered
# frame, which the reference's --dump-dom run under virtual time does not always make:
# a reference that sometimes misses them would make the check flaky. The renderer's own
# tests cover an IntersectionObserver loader: tests/support/script_site.py.)
SCRIPT_LAZY_SCRIPT = """<script>
(function () {
  function reveal() {
    var photos = document.querySelectorAll("figure.photo:not([data-done])");
    for (var i = 0; i < photos.length; i++) {
      var box = photos[i].getBoundingClientRect();
      if (box.top > 2 * window.innerHeight || box.bottom < -window.innerHeight) continue;
      var img = new Image();
      img.src = "/images/script/lazy/" + photos[i].id + ".png";
      img.alt = "";
      photos[i].appendChild(img);
      photos[i].setAttribute("data-done", "");
    }
  }
  window.addEventListener("scroll", reveal);
  window.addEventListener("load", reveal);
})();
</script>"""

MENU_SCRIPT = """<script>
(function () {
  var sections = [["spring", "Spring collection"], ["autumn", "Autumn collection"]];
  var menu = document.getElementById("menu");
  sections.forEach(function (section) {
    var a = document.createElement("a");
    a.href = "/scripts/menu/" + section[0] + ".html";
    a.textContent = section[1];
    menu.appendChild(a);
  });
})();
</script>"""

JSON_SCRIPT = """<script>
fetch("/scripts/data/items.json")
  .then(function (response) { return response.json(); })
  .then(function (items) {
    var list = document.getElementById("items");
    list.innerHTML = items.map(function (item) {
      var picture = item.background
        ? '<div class="tile" style="background-image: url(' + item.image + ')"></div>'
        : '<img src="' + item.image + '" alt="" width="48" height="32">';
      return "<li>" + picture + "<span>" + item.title + "</span></li>";
    }).join("");
  });
</script>"""

JSON_ITEMS = (
    ("Blue mug", "/images/script/json/mug.png", False),
    ("Red kettle", "/images/script/json/kettle.jpg", False),
    ("Tea towel", "/images/script/json/towel.png", True),
)

# Analytics as sites inline it: a queue, a cookie, timing. Nothing it does makes an
# image or a link, so ``auto`` must leave the page alone (``always`` renders it in vain).
ANALYTICS_SCRIPT = """<script>
window.dataLayer = window.dataLayer || [];
function track() { window.dataLayer.push(arguments); }
track("js", Date.now());
track("config", "FIXTURE-1", {page_path: location.pathname, title: document.title});
document.cookie = "visitor=" + Math.floor(Math.random() * 1e9) + "; path=/; SameSite=Lax";
window.addEventListener("load", function () {
  track("timing", Math.round(performance.now()));
});
</script>"""


def _scripts(b: _Builder) -> None:
    one = {"one_viewport": True}

    b.image("/images/script/gallery-cover.png", why="the gallery's one <img> in the markup")
    for name in ("harbour.jpg", "lighthouse.png", "dunes.jpg", "pier.gif"):
        b.image(
            f"/images/script/gallery/{name}",
            why="gallery <img> made by createElement('img') from a JS array",
            needs_render=GALLERY,
        )
    body = (
        """<img src="/images/script/gallery-cover.png" alt="cover" width="48" height="32">
<div id="gallery"></div>
"""
        + GALLERY_SCRIPT
    )
    b.page(GALLERY, _html("Script gallery", body), auto=True, **one)

    for name in ("one.jpg", "two.png", "three.webp"):
        b.image(
            f"/images/script/slider/{name}",
            why="slide built by innerHTML from a JS array",
            needs_render=SLIDER,
        )
    b.image(
        "/images/script/slider/slide-bg.png",
        found=None,
        why="<style> background of .slide: no .slide until the script makes them",
        needs_render=SLIDER,
    )
    head = """<style>
.slide { display: inline-block; padding: 4px;
         background: url(/images/script/slider/slide-bg.png) no-repeat }
</style>"""
    body = '<div class="slider"><div class="slider-track"></div></div>\n' + SLIDER_SCRIPT
    b.page(SLIDER, _html("Script slider", body, head), auto=True, **one)

    for name in ("far-1", "far-2"):
        b.image(
            f"/images/script/lazy/{name}.png",
            why="new Image() when its <figure> nears the viewport, 2400px down, no data-*",
            needs_render=SCRIPT_LAZY,
        )
    head = "<style>figure.photo { width: 48px; height: 32px; margin: 4px }</style>"
    body = (
        """<p>The photos are far down: a browser shows them once they near the viewport.</p>
<div style="height: 2400px">Spacer.</div>
<figure class="photo" id="far-1"></figure>
<figure class="photo" id="far-2"></figure>
"""
        + SCRIPT_LAZY_SCRIPT
    )
    b.page(SCRIPT_LAZY, _html("Script lazy loader", body, head), auto=True, **one)

    b.image("/images/script/menu-logo.png", why="the menu page's own <img>")
    body = (
        """<img src="/images/script/menu-logo.png" alt="logo" width="48" height="32">
<nav id="menu"></nav>
"""
        + MENU_SCRIPT
    )
    b.page(MENU, _html("Script menu", body), auto=True, **one)
    for path in MENU_PAGES:
        season = path.rsplit("/", 1)[1].removesuffix(".html")
        images = (f"/images/script/menu/{season}-1.jpg", f"/images/script/menu/{season}-2.png")
        for image in images:
            b.image(
                image,
                why="<img> on a page only a script-made link leads to",
                needs_render=MENU,
            )
        body = "\n".join(f'<img src="{image}" alt="" width="48" height="32">' for image in images)
        title = f"{season.title()} collection"
        b.page(path, _html(title, body), via="script", needs_render=MENU, **one)

    b.text(
        "/scripts/data/items.json",
        json.dumps([{"title": t, "image": i, "background": bg} for t, i, bg in JSON_ITEMS]),
    )
    for _title, image, background in JSON_ITEMS:
        b.image(
            image,
            why="from JSON fetched by fetch(), put in the DOM"
            + (" as a style background" if background else ""),
            needs_render=JSON_PAGE,
        )
    head = "<style>.tile { width: 48px; height: 32px }</style>"
    body = '<ul id="items"></ul>\n' + JSON_SCRIPT
    b.page(JSON_PAGE, _html("Script JSON content", body, head), auto=True, **one)

    b.image("/images/script/analytics-hero.png", why="the analytics page's own <img>")
    body = '<img src="/images/script/analytics-hero.png" alt="hero" width="48" height="32">'
    b.page(
        ANALYTICS,
        _html("Analytics only", body, ANALYTICS_SCRIPT),
        auto=False,
        **one,
    )


# Each: (name, markup, URL paths Chromium loads at the probe viewport, extra files, why).
PROBES = (
    (
        "query-in-page-encoding",
        '<img src="/probe/query.png?name=café" alt="">',
        ("/probe/query.png?name=caf%E9",),
        (),
        "a browser encodes a query in the page's encoding (windows-1252: %E9), not UTF-8 (%C3%A9)",
    ),
    (
        "svg-use-sprite",
        '<svg width="16" height="16"><use href="/probe/sprite.svg#dot"/></svg>',
        ("/probe/sprite.svg",),
        (),
        "<svg><use href> of an external SVG sprite",
    ),
    (
        "preload-href",
        '<link rel="preload" as="image" href="/probe/preload.png">',
        ("/probe/preload.png",),
        (),
        '<link rel="preload" as="image" href>',
    ),
    (
        "preload-imagesrcset",
        '<link rel="preload" as="image" '
        'imagesrcset="/probe/preload-1x.png 1x, /probe/preload-2x.png 2x">',
        ("/probe/preload-1x.png",),
        ("/probe/preload-2x.png",),
        '<link rel="preload" as="image" imagesrcset>',
    ),
    (
        "background-attribute",
        '<table background="/probe/table-bg.png"><tr>'
        '<td background="/probe/cell-bg.png">cell</td></tr></table>',
        ("/probe/table-bg.png", "/probe/cell-bg.png"),
        (),
        "legacy background attribute of <table> and <td>",
    ),
    (
        "css-custom-property",
        '<div style="--hero: url(/probe/custom-property.png); '
        'background-image: var(--hero); width: 48px; height: 32px"></div>',
        ("/probe/custom-property.png",),
        (),
        "url() in a CSS custom property, used through var()",
    ),
    (
        "style-block-import",
        '<style>@import url("/probe/from-style.css");</style>'
        '<div class="probe-import" style="width: 48px; height: 32px"></div>',
        ("/probe/imported-by-style.png",),
        (),
        "@import inside a <style> block (a linked sheet's @import is followed)",
    ),
    (
        "image-tag-outside-svg",
        '<image src="/probe/image-tag.png" alt="">',
        ("/probe/image-tag.png",),
        (),
        "<image src> outside <svg>: the HTML parser turns it into <img>",
    ),
)


def _probes(b: _Builder) -> None:
    """Markup beyond the fixture list that our extraction misses today, on a page no
    fixture page links to (in windows-1252, for the query probe)."""
    for name, markup, loads, extra, why in PROBES:
        b.probes.append(Probe(name, markup, loads, why))
        for path in (*loads, *extra):
            if not path.endswith(".svg"):
                b.files[path.split("?")[0]] = draw(path)
    b.files["/probe/sprite.svg"] = (
        b'<svg xmlns="http://www.w3.org/2000/svg"><symbol id="dot" viewBox="0 0 16 16">'
        b'<circle cx="8" cy="8" r="8"/></symbol></svg>\n'
    )
    b.text("/probe/from-style.css", ".probe-import { background: url(imported-by-style.png) }\n")
    sections = "\n".join(
        f"<section><h2>{name}</h2>\n{markup}\n</section>" for name, markup, *_ in PROBES
    )
    page = _html("Probes", sections, charset="windows-1252")
    b.files["/probes.html"] = page.encode("cp1252")
