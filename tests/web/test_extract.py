"""Tests for crawler.web.extract: every kind of image markup, links, encodings, broken HTML."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crawler.web.css import style_attribute_image_urls, stylesheet_image_urls
from crawler.web.extract import (
    ImageRef,
    charset_from_content_type,
    decode_html,
    extract_page,
    parse_srcset,
)

PAGE = "http://example.org/gallery/index.html"
BASE = "http://example.org/gallery/"


def images(html: str | bytes, content_type: str | None = None) -> list[tuple[str, str]]:
    markup = html.encode("utf-8") if isinstance(html, str) else html
    return [(ref.url, ref.kind) for ref in extract_page(markup, PAGE, content_type).images]


def links(html: str) -> list[str]:
    return extract_page(html.encode("utf-8"), PAGE).links


# -- parse_srcset --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        ("a.jpg", ["a.jpg"]),
        ("a.jpg 1x, b.jpg 2x", ["a.jpg", "b.jpg"]),
        (
            "small.jpg 320w, medium.jpg 640w, large.jpg 1280w",
            ["small.jpg", "medium.jpg", "large.jpg"],
        ),
        ("a.jpg 1x,b.jpg 2x", ["a.jpg", "b.jpg"]),
        # A comma inside a URL does not split it; only a trailing comma ends a bare URL.
        ("a.jpg,b.jpg", ["a.jpg,b.jpg"]),
        (
            "resize?w=100,h=50 1x, resize?w=200,h=100 2x",
            ["resize?w=100,h=50", "resize?w=200,h=100"],
        ),
        ("a.jpg, b.jpg", ["a.jpg", "b.jpg"]),
        ("a.jpg,, b.jpg,", ["a.jpg", "b.jpg"]),
        ("a.jpg 1x,,, b.jpg 2x,", ["a.jpg", "b.jpg"]),
        ("  \n\t a.jpg \n 1x \t,\n  b.jpg\t2x  ", ["a.jpg", "b.jpg"]),
        ("a.jpg (weird, descriptor) 1x, b.jpg 2x", ["a.jpg", "b.jpg"]),
        (
            "data:image/gif;base64,R0lGOD,lhAQ 1x, real.jpg 2x",
            ["data:image/gif;base64,R0lGOD,lhAQ", "real.jpg"],
        ),
        ("", []),
        ("   ", []),
        (",,,", []),
    ],
)
def test_parse_srcset(srcset: str, expected: list[str]):
    assert parse_srcset(srcset) == expected


# -- charset_from_content_type -------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html; charset=utf-8", "utf-8"),
        ("text/html;charset=ISO-8859-1", "ISO-8859-1"),
        ('text/html; charset="windows-1252"', "windows-1252"),
        ("text/html; CHARSET='koi8-r'", "koi8-r"),
        ("text/html; boundary=x; charset=euc-jp", "euc-jp"),
        ("text/html", None),
        ("text/html; charset=", None),
        ("", None),
        (None, None),
    ],
)
def test_charset_from_content_type(content_type: str | None, expected: str | None):
    assert charset_from_content_type(content_type) == expected


# -- images --------------------------------------------------------------------------


def test_img_src():
    assert images('<p><img src="a.jpg" alt="A"></p>') == [(BASE + "a.jpg", "img_src")]


def test_img_srcset_with_width_and_density_descriptors():
    html = '<img src="a.jpg" srcset="a-640.jpg 640w, a-1280.jpg 1280w"><img srcset="b.png 2x">'
    assert images(html) == [
        (BASE + "a.jpg", "img_src"),
        (BASE + "a-640.jpg", "srcset"),
        (BASE + "a-1280.jpg", "srcset"),
        (BASE + "b.png", "srcset"),
    ]


def test_srcset_urls_with_commas_odd_whitespace_and_trailing_commas():
    html = '<img srcset="\n  /r?w=1,h=2 1x ,\t/r?w=2,h=4   2x,  ">'
    assert images(html) == [
        ("http://example.org/r?w=1,h=2", "srcset"),
        ("http://example.org/r?w=2,h=4", "srcset"),
    ]


def test_picture_sources_and_fallback_are_all_found():
    # lxml does not treat <source> as void, so each following tag nests inside it.
    html = """
        <picture>
          <source type="image/avif" srcset="hero.avif 1x, hero@2x.avif 2x">
          <source type="image/webp" srcset="hero.webp">
          <source media="(max-width: 600px)" srcset="hero-small.jpg">
          <img src="hero.jpg" srcset="hero@2x.jpg 2x" alt="">
        </picture>
        <img src="after.png">
    """
    assert images(html) == [
        (BASE + "hero.avif", "picture"),
        (BASE + "hero@2x.avif", "picture"),
        (BASE + "hero.webp", "picture"),
        (BASE + "hero-small.jpg", "picture"),
        (BASE + "hero.jpg", "img_src"),
        (BASE + "hero@2x.jpg", "srcset"),
        (BASE + "after.png", "img_src"),
    ]


def test_source_without_srcset_is_ignored():
    html = '<video><source src="clip.mp4" type="video/mp4"></video><img src="a.jpg">'
    assert images(html) == [(BASE + "a.jpg", "img_src")]


def test_lazy_images_skip_the_data_placeholder():
    html = """
        <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="photo.jpg"
             data-srcset="photo-1x.jpg 1x, photo-2x.jpg 2x">
        <img src="data:image/png;base64,iVBORw0KGgo=" data-lazy-src="other.jpg">
        <div class="banner" data-original="banner.jpg"></div>
    """
    found = images(html)
    assert found == [
        (BASE + "photo.jpg", "lazy"),
        (BASE + "photo-1x.jpg", "lazy"),
        (BASE + "photo-2x.jpg", "lazy"),
        (BASE + "other.jpg", "lazy"),
        (BASE + "banner.jpg", "lazy"),
    ]
    assert not any(url.startswith("data:") for url, _ in found)


def test_link_to_an_image_file_is_an_image():
    html = '<a href="full/photo.JPG">big</a><area href="/map.png" shape="rect">'
    assert images(html) == [
        (BASE + "full/photo.JPG", "link"),
        ("http://example.org/map.png", "link"),
    ]
    assert links(html) == []


def test_links_to_pages():
    html = """
        <a href="page2.html">next</a>
        <a href="/about">about</a>
        <a href="//other.example/x">other</a>
        <a href="page2.html#comments">same page again</a>
        <a href="#top">top</a>
        <a href="mailto:me@example.org">mail</a>
        <a href="javascript:void(0)">js</a>
        <a>no href</a>
    """
    assert links(html) == [
        BASE + "page2.html",
        "http://example.org/about",
        "http://other.example/x",
    ]
    assert images(html) == []


def test_frames_and_iframes_are_links_or_images():
    html = """
        <frameset><frame src="nav.html"><frame src="photo.jpg"></frameset>
        <iframe src="embed/gallery.html"></iframe>
        <IFRAME SRC="embed/gallery.html"></IFRAME>
        <iframe src="about:blank"></iframe><iframe srcdoc="<p>x</p>"></iframe>
        <iframe src="javascript:void(0)"></iframe>
    """
    content = extract_page(html.encode(), PAGE)
    assert content.links == [BASE + "nav.html", BASE + "embed/gallery.html"]
    assert [(ref.url, ref.kind) for ref in content.images] == [(BASE + "photo.jpg", "frame")]


def test_object_and_embed_that_show_an_image():
    html = """
        <object data="diagram.svg" type="image/svg+xml"></object>
        <object data="render?id=3" type="IMAGE/PNG"></object>
        <embed src="chart.png">
        <embed src="movie.swf" type="application/x-shockwave-flash">
        <object data="doc.pdf" type="application/pdf"></object>
        <object type="image/png"></object>
    """
    assert images(html) == [
        (BASE + "diagram.svg", "object"),
        (BASE + "render?id=3", "object"),
        (BASE + "chart.png", "object"),
    ]


def test_nofollow_links_are_kept_apart():
    html = """
        <a href="a.html">a</a>
        <a rel="nofollow" href="b.html">b</a>
        <a rel="External NoFollow" href="c.html">c</a>
        <a rel="nofollow" href="a.html">a again, followed elsewhere</a>
        <a rel="nofollow" href="d.html">d</a><a href="d.html">d followed later</a>
        <a rel="nofollow" href="big.jpg">an image is still an image</a>
    """
    content = extract_page(html.encode(), PAGE)
    assert content.links == [BASE + "a.html", BASE + "d.html"]
    assert content.nofollow_links == [BASE + "b.html", BASE + "c.html"]
    assert [ref.url for ref in content.images] == [BASE + "big.jpg"]


@pytest.mark.parametrize("directives", ["nofollow", "noindex, NOFOLLOW", "none"])
def test_meta_robots_nofollow_puts_every_link_apart(directives: str):
    html = f"""
        <meta name="robots" content="{directives}">
        <a href="a.html">a</a><a rel="nofollow" href="b.html">b</a>
        <iframe src="f.html"></iframe><img src="x.png">
    """
    content = extract_page(html.encode(), PAGE)
    assert content.links == []
    assert content.nofollow_links == [BASE + "a.html", BASE + "f.html", BASE + "b.html"]
    assert images(html) == [(BASE + "x.png", "img_src")]


def test_meta_robots_without_nofollow_changes_nothing():
    html = '<meta name="robots" content="noindex, follow"><a href="a.html">a</a>'
    content = extract_page(html.encode(), PAGE)
    assert (content.links, content.nofollow_links) == ([BASE + "a.html"], [])


def test_preload_background_attribute_svg_use_and_image_tag():
    html = """
        <link rel="preload" as="image" href="hero.png"
              imagesrcset="hero-1x.png 1x, hero-2x.png 2x">
        <link rel="preload" as="font" href="font.woff2">
        <body background="paper.gif">
        <table background="t.png"><tr background="r.png"><th background="h.png">
        <td background="d.png">x</td></tr></table>
        <svg><use href="#local"/><use xlink:href="sprites.svg#star"/></svg>
        <image src="legacy.png">
    """
    assert images(html) == [
        (BASE + "hero.png", "preload"),
        (BASE + "hero-1x.png", "preload"),
        (BASE + "hero-2x.png", "preload"),
        (BASE + "paper.gif", "background"),
        (BASE + "t.png", "background"),
        (BASE + "r.png", "background"),
        (BASE + "h.png", "background"),
        (BASE + "d.png", "background"),
        (BASE + "sprites.svg", "svg_image"),
        (BASE + "legacy.png", "img_src"),
    ]


def test_import_in_a_style_block_is_a_style_sheet_to_fetch():
    html = '<style>@import url("css/more.css"); @import "/site.css";</style>'
    content = extract_page(html.encode(), PAGE)
    assert content.stylesheets == [BASE + "css/more.css", "http://example.org/site.css"]


def test_query_is_encoded_in_the_page_encoding_and_the_path_in_utf8():
    html = '<meta charset="windows-1252"><img src="caf\xe9/p.png?name=caf\xe9">'
    assert images(html.encode("cp1252")) == [(BASE + "caf%C3%A9/p.png?name=caf%E9", "img_src")]
    assert images(html.replace("windows-1252", "utf-8")) == [
        (BASE + "caf%C3%A9/p.png?name=caf%C3%A9", "img_src")
    ]


def test_base_href_is_used_for_images_and_links():
    html = """
        <head><base href="https://cdn.example.net/assets/"></head>
        <body><img src="a.jpg"><a href="b.png">b</a><a href="next.html">n</a></body>
    """
    content = extract_page(html.encode(), PAGE)
    assert content.images == [
        ImageRef("https://cdn.example.net/assets/a.jpg", "img_src"),
        ImageRef("https://cdn.example.net/assets/b.png", "link"),
    ]
    assert content.links == ["https://cdn.example.net/assets/next.html"]


def test_relative_base_href_resolves_against_the_page():
    html = '<base href="/static/"><img src="a.jpg">'
    assert images(html) == [("http://example.org/static/a.jpg", "img_src")]


def test_duplicates_keep_the_first_kind():
    html = """
        <img src="a.jpg">
        <a href="a.jpg">a</a>
        <img srcset="a.jpg 2x, b.jpg 3x">
        <a href="b.jpg">b</a>
        <img src="http://EXAMPLE.org:80/gallery/a.jpg#frag">
    """
    assert images(html) == [(BASE + "a.jpg", "img_src"), (BASE + "b.jpg", "srcset")]


def test_entity_encoded_attributes():
    html = (
        '<img src="thumb.php?id=1&amp;size=big">'
        '<img src="&#x2F;root.png">'
        '<img src="caf&eacute;.jpg">'
    )
    assert images(html) == [
        (BASE + "thumb.php?id=1&size=big", "img_src"),
        ("http://example.org/root.png", "img_src"),
        (BASE + "caf%C3%A9.jpg", "img_src"),
    ]


def test_image_urls_are_normalized():
    assert images('<img src="My Photo.jpg#x">') == [(BASE + "My%20Photo.jpg", "img_src")]


def test_image_input_video_poster_and_svg_image():
    html = """
        <form><INPUT TYPE=" Image " SRC="go.png"><input type="text" src="not-an-image.png">
        <input src="no-type.png"></form>
        <video poster="poster.jpg" controls><source src="clip.mp4"></video>
        <svg viewBox="0 0 10 10">
          <image xlink:href="old.png" width="10" height="10"/>
          <IMAGE XLINK:HREF="upper.png"/>
          <image href="new.png" xlink:href="ignored.png"/>
        </svg>
        <img src="after.jpg">
    """
    assert images(html) == [
        (BASE + "go.png", "input"),
        (BASE + "poster.jpg", "poster"),
        (BASE + "old.png", "svg_image"),
        (BASE + "upper.png", "svg_image"),
        (BASE + "new.png", "svg_image"),
        (BASE + "after.jpg", "img_src"),
    ]


def test_icons_by_rel_token():
    html = """
        <link rel="icon" href="/favicon.png" sizes="32x32">
        <link rel="Shortcut Icon" href="/favicon.ico">
        <link rel="apple-touch-icon" href="touch.png">
        <link rel="apple-touch-icon-precomposed" href="touch-pre.png">
        <link rel=" mask-icon " href="mask.svg" color="#000">
        <link rel="stylesheet" href="site.css">
        <link rel="iconic" href="not-an-icon.png">
        <link rel="preload icon" href="">
    """
    assert images(html) == [
        ("http://example.org/favicon.png", "icon"),
        ("http://example.org/favicon.ico", "icon"),
        (BASE + "touch.png", "icon"),
        (BASE + "touch-pre.png", "icon"),
        (BASE + "mask.svg", "icon"),
    ]


def test_social_preview_images():
    html = """
        <meta property="og:image" content=" https://cdn.example.net/og.jpg ">
        <meta property="OG:IMAGE:URL" content="og-url.jpg">
        <meta property="og:image:secure_url" content="og-secure.jpg">
        <meta property="og:image:width" content="1200">
        <meta name="twitter:image" content="tw.jpg">
        <meta name="twitter:image:src" content="tw-src.jpg">
        <meta property="og:image" content="   ">
        <meta name="twitter:image" content="">
        <meta name="description" content="photo.jpg">
    """
    assert images(html) == [
        ("https://cdn.example.net/og.jpg", "meta"),
        (BASE + "og-url.jpg", "meta"),
        (BASE + "og-secure.jpg", "meta"),
        (BASE + "tw.jpg", "meta"),
        (BASE + "tw-src.jpg", "meta"),
    ]


# -- CSS in the page -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("background: url(a.png)", ["a.png"]),
        ("background-image:url( 'a.png' )", ["a.png"]),
        ('list-style-image: URL("a.png")', ["a.png"]),
        ('content: url(a.png) / "alt"; cursor: url(c.cur) 4 4, auto', ["a.png", "c.cur"]),
        ("border-image: url(b.png) 30 round", ["b.png"]),
        ("border-image-source: url(b.png)", ["b.png"]),
        ("mask-image: url(m.svg); -webkit-mask-image: url(m.svg)", ["m.svg"]),
        ("background: url(a.png), url(b.png) no-repeat", ["a.png", "b.png"]),
        # CSS escapes: \28 and \29 are parentheses, "\ " a space, \" a quote
        (r"background: url(a\28 1\29.png)", ["a(1).png"]),
        (r"background: url(my\ photo.png)", ["my photo.png"]),
        (r'background: url("say\"hi\".png")', ['say"hi".png']),
        (
            r"background: url('long\
name.png')",
            ["longname.png"],
        ),
        # image-set(), with url() and bare string candidates; type() strings are not URLs
        (
            'background-image: image-set("a.png" 1x, url(b.png) 2x, "c.avif" type("image/avif"))',
            ["a.png", "b.png", "c.avif"],
        ),
        ("background-image: -webkit-image-set('a.png' 1x, 'b.png' 2x)", ["a.png", "b.png"]),
        # comments are not CSS, wherever they are
        (
            "/* background: url(no.png) */ background: /* x */ url(yes.png) /* url(no2.png) */",
            ["yes.png"],
        ),
        # the last declaration of a property wins; background resets background-image
        ("background: url(a.png); background: linear-gradient(red, blue)", []),
        ("background-image: url(a.png); background: red", []),
        ("background: url(a.png); background-image: url(b.png)", ["b.png"]),
        ("background: url(a.png); background-color: red", ["a.png"]),
        ("background: url(a.png) !important; background: url(b.png)", ["a.png"]),
        # only image properties; strings outside url() are text
        ('content: "photo.png"; font-family: "x.png"; --hero: url(var.png)', []),
        ("color: red", []),
        ("background: url()", []),
        ("background: url(a b.png)", []),
    ],
)
def test_style_attribute_image_urls(style: str, expected: list[str]):
    assert style_attribute_image_urls(style) == expected


def test_stylesheet_image_urls():
    css = """
        @charset "utf-8";
        @import url("print.css") print;
        @font-face { font-family: Icons; src: url(icons.svg#icons) format("svg"),
                     url("icons.woff2") format("woff2"); }
        .hero { background: url(hero.jpg) center / cover; }
        .old { background: url(old.jpg); background: none; }
        a:hover { cursor: url(hand.cur), pointer }
        @media (min-width: 40em) {
          .logo { content: url(logo.svg); &:hover { mask-image: url(mask.png) } }
        }
        .inline { background: url(data:image/png;base64,iVBORw0KGgo=) }
        .tricky { background: url("a;}{b.png") }
    """
    assert stylesheet_image_urls(css) == [
        "hero.jpg",
        "hand.cur",
        "logo.svg",
        "mask.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "a;}{b.png",
    ]


def test_declarations_outside_a_rule_are_not_applied_by_a_stylesheet():
    assert stylesheet_image_urls("background: url(a.png); p { color: red }") == []


def test_css_in_style_blocks_and_attributes():
    html = """
        <head><base href="/static/">
        <style>
          @font-face { font-family: F; src: url(font.svg) format("svg"); }
          body { background-image: url('bg.jpg') }
          .x { background: url(gone.png); background: linear-gradient(red, blue) }
          .y { background: url(data:image/gif;base64,R0lGOD) }
        </style></head>
        <body><div style="background: url(&quot;inline.png&quot;) no-repeat">
        <p STYLE="list-style-image: url(bullet.png)"><span style="color: red">x</span></body>
    """
    # <style> rules are matched once the page is read: their images come last.
    assert images(html) == [
        ("http://example.org/static/inline.png", "css"),
        ("http://example.org/static/bullet.png", "css"),
        ("http://example.org/static/bg.jpg", "css"),
    ]


# -- encodings -----------------------------------------------------------------------


LATIN1_PAGE = '<html><head>{meta}</head><body><img src="café.jpg"><a href="über.html">u</a>'


def test_meta_charset_decodes_a_latin1_page():
    html = LATIN1_PAGE.format(meta='<meta charset="iso-8859-1">').encode("latin-1")
    content = extract_page(html, PAGE)
    assert content.images == [ImageRef(BASE + "caf%C3%A9.jpg", "img_src")]
    assert content.links == [BASE + "%C3%BCber.html"]


def test_content_type_charset_decodes_a_latin1_page():
    html = LATIN1_PAGE.format(meta="").encode("latin-1")
    assert images(html, "text/html; charset=ISO-8859-1") == [(BASE + "caf%C3%A9.jpg", "img_src")]


def test_content_type_charset_wins_over_meta_charset():
    wrong_meta = LATIN1_PAGE.format(meta='<meta charset="utf-8">')
    assert images(wrong_meta.encode("latin-1"), "text/html; charset=iso-8859-1") == [
        (BASE + "caf%C3%A9.jpg", "img_src")
    ]
    other_way = LATIN1_PAGE.format(meta='<meta charset="windows-1252">')
    assert images(other_way.encode("utf-8"), "text/html; charset=utf-8") == [
        (BASE + "caf%C3%A9.jpg", "img_src")
    ]


def test_latin1_label_means_windows_1252_as_in_a_browser():
    # 0x80 is "€" in windows-1252; a browser reads every latin-1 label as windows-1252.
    body = '<img src="\u20ac-café.jpg">'.encode("cp1252")
    expected = [(BASE + "%E2%82%AC-caf%C3%A9.jpg", "img_src")]
    assert images(b'<meta charset="iso-8859-1">' + body) == expected
    assert images(body, "text/html; charset=latin1") == expected
    content = b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
    assert images(content + body) == expected


def test_undeclared_page_that_is_not_utf8_is_windows_1252():
    assert images('<img src="\u20ac.jpg">'.encode("cp1252")) == [
        (BASE + "%E2%82%AC.jpg", "img_src")
    ]


def test_byte_order_mark_wins_over_every_declaration():
    html = b'\xef\xbb\xbf<meta charset="iso-8859-1"><img src="caf\xc3\xa9.jpg">'
    expected = [(BASE + "caf%C3%A9.jpg", "img_src")]
    assert images(html) == expected
    assert images(html, "text/html; charset=iso-8859-1") == expected
    utf16 = '<img src="café.jpg">'.encode("utf-16")
    assert images(utf16) == expected


def test_decode_html_ignores_unknown_labels_and_a_meta_claiming_utf16():
    assert decode_html('<meta charset="utf-16"><p>é'.encode()) == '<meta charset="utf-16"><p>é'
    assert decode_html("é".encode(), "text/html; charset=no-such-charset") == "é"


# pytest resets the warning filters around each test, dropping the one extract.py sets
# at import; the test below checks that filter in a process of its own.
@pytest.mark.filterwarnings("ignore::bs4.XMLParsedAsHTMLWarning")
def test_xml_declaration_does_not_override_the_detected_encoding():
    html = '<?xml version="1.0" encoding="iso-8859-1"?><html><img src="фото.jpg">'.encode()
    assert images(html, "text/html; charset=utf-8") == [
        (BASE + "%D1%84%D0%BE%D1%82%D0%BE.jpg", "img_src")
    ]


def test_entity_encoded_srcset_and_lazy_attributes():
    html = (
        '<img srcset="r.php?w=1&amp;h=2 1x, r.php?w=2&amp;h=4 2x">'
        '<div data-src="t.php?a=1&amp;b=2"></div>'
    )
    assert images(html) == [
        (BASE + "r.php?w=1&h=2", "srcset"),
        (BASE + "r.php?w=2&h=4", "srcset"),
        (BASE + "t.php?a=1&b=2", "lazy"),
    ]


def test_utf8_page_without_any_declaration():
    html = '<img src="фото.jpg">'.encode()
    assert images(html) == [(BASE + "%D1%84%D0%BE%D1%82%D0%BE.jpg", "img_src")]


def test_non_latin_legacy_charset_from_content_type():
    html = '<img src="写真.png">'.encode("shift_jis")
    assert images(html, "text/html; charset=shift_jis") == [
        (BASE + "%E5%86%99%E7%9C%9F.png", "img_src")
    ]


# -- malformed HTML ------------------------------------------------------------------


def test_unclosed_and_uppercase_tags():
    html = '<HTML><BODY><DIV><P><IMG SRC="A.JPG"><p><Img Src="b.jpg"><A HREF="next.html">n'
    content = extract_page(html.encode(), PAGE)
    assert [ref.url for ref in content.images] == [BASE + "A.JPG", BASE + "b.jpg"]
    assert content.links == [BASE + "next.html"]


def test_images_after_a_stray_closing_html_tag():
    html = """
        <html><body><img src="one.jpg"></body></html>
        <img src="two.jpg">
        </html>
        <p><img src="three.jpg"><a href="four.png">4</a>
    """
    assert images(html) == [
        (BASE + "one.jpg", "img_src"),
        (BASE + "two.jpg", "img_src"),
        (BASE + "three.jpg", "img_src"),
        (BASE + "four.png", "link"),
    ]


def test_images_after_a_stray_closing_html_tag_of_every_kind():
    html = """
        <HTML><BODY><IMG SRC="one.jpg"></BODY></HTML>
        <picture><source srcset="two.webp"><img src="two.jpg"></picture>
        </html>
        <div style="background: url(three.png)"><VIDEO POSTER="four.jpg"></VIDEO>
        <a href="page.html">page</a>
    """
    content = extract_page(html.encode(), PAGE)
    assert [(ref.url, ref.kind) for ref in content.images] == [
        (BASE + "one.jpg", "img_src"),
        (BASE + "two.webp", "picture"),
        (BASE + "two.jpg", "img_src"),
        (BASE + "three.png", "css"),
        (BASE + "four.jpg", "poster"),
    ]
    assert content.links == [BASE + "page.html"]


def test_percent_encoding_case_does_not_make_a_second_image():
    html = '<img src="a%2fb.png"><img src="a%2Fb.png"><a href="./x/../a%2fb.png">a</a>'
    assert images(html) == [(BASE + "a%2Fb.png", "img_src")]


def test_empty_path_segments_are_kept():
    assert images('<img src="images//x.png">') == [(BASE + "images//x.png", "img_src")]


def test_a_megabyte_page_yields_every_reference():
    row = (
        '<div class="card" style="background: url(bg{i}.jpg)"><p>Some text &amp; more</p>'
        '<img src="img/{i}.jpg" srcset="img/{i}-2x.jpg 2x"><a href="page{i}.html">p</a></div>\n'
    )
    html = "".join(row.format(i=i) for i in range(6000)).encode()
    assert len(html) > 1_000_000
    content = extract_page(html, PAGE)
    assert len(content.images) == 18000
    assert len(content.links) == 6000


def test_empty_and_non_html_input():
    assert extract_page(b"", PAGE).images == []
    assert extract_page(b"just some text, no markup", PAGE).links == []
    assert extract_page(b"\x00\xff\xfe binary", PAGE).images == []


def test_empty_attributes_are_skipped():
    html = '<img src=""><img src="   "><img srcset=""><a href="">x</a><img data-src="">'
    content = extract_page(html.encode(), PAGE)
    assert content.images == []
    assert content.links == []


def test_css_custom_properties_read_by_an_image_property():
    assert style_attribute_image_urls(
        "--hero: url(/h.png); background-image: var(--hero); width: 4px"
    ) == ["/h.png"]
    sheet = """
        :root { --bg: url("bg.png"); --Icon: url(icon.svg); --unused: url(unused.png) }
        .a { background: var(--bg) }
        .b { list-style-image: var(--Icon, url(fallback.png)) }
        .c { color: var(--unused) }
        .d { background: var(--icon) }
    """
    # --icon is not --Icon (names are case-sensitive); --unused is read by no image
    # property; a var() fallback url() is kept like any url().
    assert stylesheet_image_urls(sheet) == ["bg.png", "fallback.png", "icon.svg"]


def test_template_content_is_inert():
    html = """
        <template id="card"><img src="card.png"><div style="background:url(bg.png)"></div>
        </template>
        <img src="shown.png">
    """
    assert images(html) == [(BASE + "shown.png", "img_src")]


def test_pages_that_look_like_a_url_or_xml_print_no_warning_in_any_thread():
    """BeautifulSoup warns about such markup; extract.py filters those two warnings for
    its own calls, once at import (``catch_warnings`` in page threads is not thread-safe)."""
    script = """
import threading
import warnings

from bs4 import BeautifulSoup
from crawler.web.extract import extract_page

pages = [
    b"http://example.org/a.png",
    b"gallery.html",
    b'<?xml version="1.0"?><rss><channel><item><img src="b.png"/></item></channel></rss>',
]
def parse():
    for page in pages:
        extract_page(page, "http://example.org/", "text/html")
threads = [threading.Thread(target=parse) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
try:
    BeautifulSoup("http://example.org/", "lxml")
except Warning:
    print("other callers still get the warning")
"""
    done = subprocess.run(
        # Every warning an error, but for the libraries' own deprecations (the lowest
        # allowed BeautifulSoup passes lxml an option lxml 6 deprecates).
        [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert (done.returncode, errors) == (0, []), done.stderr
    assert done.stdout == "other callers still get the warning\n"
