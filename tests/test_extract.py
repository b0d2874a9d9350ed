"""Tests for crawler.extract: every kind of image markup, links, encodings, broken HTML."""

from __future__ import annotations

import pytest

from crawler.extract import (
    ImageRef,
    charset_from_content_type,
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


def test_empty_and_non_html_input():
    assert extract_page(b"", PAGE).images == []
    assert extract_page(b"just some text, no markup", PAGE).links == []
    assert extract_page(b"\x00\xff\xfe binary", PAGE).images == []


def test_empty_attributes_are_skipped():
    html = '<img src=""><img src="   "><img srcset=""><a href="">x</a><img data-src="">'
    content = extract_page(html.encode(), PAGE)
    assert content.images == []
    assert content.links == []
