"""Properties of sitemap reading on any bytes: parse_sitemap raises nothing but
NotASitemap, lists only canonical http(s) URLs (each image with a listed page or the
sitemap), at most MAX_SITEMAP_URLS of them, never expands entities nor reads files;
generated urlsets, indexes and text sitemaps give back their URLs in order; ungzip gives
at most ``limit`` bytes, a prefix of the gunzipped body, all of it unless it says it cut."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler.urls import normalize
from crawler.web import sitemaps
from crawler.web.sitemaps import NotASitemap, SitemapContent, parse_sitemap, ungzip

BASE = "http://a.test/maps/s.xml"
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
IMAGE_NS = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
SECRET = "http://secret.test/from-a-local-file"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local file an external entity could pull into a <loc>."""
    path = tmp_path_factory.mktemp("sitemaps") / "secret.txt"
    path.write_text(SECRET)
    yield path


def parsed(body: bytes, url: str = BASE) -> SitemapContent | None:
    """What parse_sitemap reads, None for NotASitemap (and only that)."""
    try:
        return parse_sitemap(body, url)
    except NotASitemap:
        return None


def assert_well_formed(content: SitemapContent | None, body: bytes, url: str = BASE) -> None:
    if content is None:
        return
    found = content.pages + content.sitemaps + [image for image, _ in content.images]
    assert len(found) <= sitemaps.MAX_SITEMAP_URLS
    for listed in found:
        assert listed.startswith(("http://", "https://")), listed
        assert normalize(listed) == listed, listed
        assert SECRET not in listed
    for _, page in content.images:
        assert page in content.pages or page == url, (page, content.pages)
    # Nothing expands: each URL comes from its own text, resolved against the sitemap's
    # URL and percent-encoded (a byte that is not UTF-8 becomes "%EF%BF%BD").
    data = ungzip(body)[0] if body.startswith(sitemaps.GZIP_MAGIC) else body
    assert sum(map(len, found)) <= 9 * len(data) + len(found) * (len(url) + 16)


# -- generated sitemaps ---------------------------------------------------------------

LABEL = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
SAFE_URLS = st.builds(
    "{}://{}.test{}/{}{}".format,
    st.sampled_from(["http", "https", "HTTP"]),
    LABEL,
    st.sampled_from(["", ":8080", ":80"]),
    st.from_regex(r"([a-z0-9_.~-]{1,6}/){0,3}[a-z0-9_.~-]{0,8}", fullmatch=True),
    st.sampled_from(["", "?a=1&b=2", "?q=é ü"]),
)
ODD_LOCS = st.one_of(
    st.text(),
    st.sampled_from(
        ["", " ", "mailto:x@y", "javascript:x()", "ftp://a.test/", "data:,x", "/rel", "../up"]
    ),
    st.sampled_from(["http://", "http://[::1", "http://a b/", "//cdn.test/x", "#frag", "?q"]),
    st.sampled_from(["&amp;", "&lt;", "&#x41;", "&#0;", "&bogus;", "&lol9;", "&x;", "]]>"]),
)
XML_DECLARATIONS = st.sampled_from(
    [
        "",
        '<?xml version="1.0"?>',
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0" encoding="bogus"?>',
        '<?xml version="1.0" encoding="utf-16"?>',
        '<?xml version="2.0"?>',
        "\ufeff",
    ]
)
DOCTYPES = st.sampled_from(
    [
        "",
        "<!DOCTYPE urlset>",
        '<!DOCTYPE u [<!ENTITY x "http://a.test/expanded">]>',
        '<!DOCTYPE u SYSTEM "http://dtd.test/u.dtd">',
        '<!DOCTYPE u [<!ENTITY % p SYSTEM "http://dtd.test/p.dtd"> %p;]>',
    ]
)


def loc_text(draw: st.DrawFn, url: str) -> str:
    """``url`` written as the text of a <loc>: escaped or in CDATA, maybe padded."""
    pad = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    if "]]>" not in url and draw(st.booleans()):
        return f"{pad}<![CDATA[{url}]]>{pad}"
    return pad + escape(url) + pad


@st.composite
def urlsets(draw: st.DrawFn) -> tuple[bytes, list[str], list[tuple[str, str]]]:
    """A urlset of safe page and image URLs, its pages and (image, page) pairs."""
    namespaced = draw(st.booleans())
    entries, pages, images = [], [], []
    for _ in range(draw(st.integers(0, 6))):
        page = draw(SAFE_URLS)
        noise = draw(
            st.sampled_from(["", "<!-- a comment -->", "<?pi x?>", "<lastmod>x</lastmod>"])
        )
        parts = [noise, f"<loc>{loc_text(draw, page)}</loc>"]
        pages.append(normalize(page))
        for image in draw(st.lists(SAFE_URLS, max_size=3)):
            parts.append(
                f"<image:image><image:loc>{loc_text(draw, image)}</image:loc></image:image>"
            )
            images.append((normalize(image), normalize(page)))
        entries.append(f"<url>{''.join(parts)}</url>")
    head = f"<urlset {NS} {IMAGE_NS}>" if namespaced else f"<urlset {IMAGE_NS}>"
    text = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', "\ufeff"]))
    text += head + "\n".join(entries) + "</urlset>"
    return text.encode(), pages, images


@st.composite
def odd_xml(draw: st.DrawFn) -> bytes:
    """XML sitemaps with odd declarations, doctypes and <loc> contents."""
    kind, entry = draw(st.sampled_from([("urlset", "url"), ("sitemapindex", "sitemap")]))
    locs = draw(st.lists(ODD_LOCS, max_size=5))
    body = "".join(f"<{entry}><loc>{loc}</loc></{entry}>" for loc in locs)
    prefix = draw(XML_DECLARATIONS) + draw(DOCTYPES)
    text = f"{prefix}<{kind} {draw(st.sampled_from([NS, '', IMAGE_NS]))}>{body}</{kind}>"
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere
    return data


def billion_laughs(depth: int, fan_out: int) -> bytes:
    entities = ['<!ENTITY lol0 "http://a.test/lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * fan_out}">' for n in range(1, depth + 1)
    ]
    return (
        f'<?xml version="1.0"?><!DOCTYPE urlset [{"".join(entities)}]>'
        f"<urlset {NS}><url><loc>&lol{depth};</loc></url><url><loc>/fine</loc></url></urlset>"
    ).encode()


BODIES = st.one_of(
    st.binary(),
    odd_xml(),
    urlsets().map(lambda generated: generated[0]),
    st.builds(billion_laughs, st.integers(1, 12), st.integers(2, 12)),
    st.lists(st.one_of(SAFE_URLS, ODD_LOCS), max_size=6).map(
        lambda lines: "\n".join(lines).encode()
    ),
)


@settings(max_examples=150, deadline=None)
@given(BODIES, st.sampled_from([BASE, "https://b.test/s.xml.gz", "http://[::1]:8080/m"]))
@example(b"<urlset><url><!-- c --><loc>/x</loc></url></urlset>", BASE)  # raised ValueError
@example(b"<urlset><url><?pi x?><loc>/x</loc></url></urlset>", BASE)
@example(b"<urlset><url><:/><loc>/x</loc></url></urlset>", BASE)  # QName: "Invalid tag name"
@example(b"<a:/>", BASE)
@example(b'<!DOCTYPE u [<!ENTITY a "b">]><urlset><url>&a;<loc>/x</loc></url></urlset>', BASE)
@example(billion_laughs(12, 12), BASE)  # 12**12 copies, were entities expanded
def test_any_body_gives_canonical_urls_or_not_a_sitemap(body: bytes, url: str) -> None:
    assert_well_formed(parsed(body, url), body, url)


@settings(max_examples=50, deadline=None)
@given(BODIES, st.integers(0, 20), st.integers(0, 9))
def test_any_gzip_body_too(body: bytes, cut: int, level: int) -> None:
    packed = gzip.compress(body, compresslevel=level)
    content = parsed(packed)
    assert_well_formed(content, packed)
    assert_well_formed(parsed(packed[: len(packed) - cut]), packed)  # cut short


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["SYSTEM", "PUBLIC 'x'"]), st.sampled_from(["loc", "url", "root"]))
def test_external_entities_are_never_read(secret_file: Path, keyword: str, where: str) -> None:
    uri = secret_file.as_uri()
    entities = f'<!ENTITY x {keyword} "{uri}"><!ENTITY % p {keyword} "{uri}"> %p;'
    inner = {"loc": "<url><loc>&x;</loc></url>", "url": "<url>&x;<loc>&x;</loc></url>"}
    body = f"<!DOCTYPE urlset [{entities}]><urlset {NS}>{inner.get(where, '&x;')}</urlset>"
    content = parsed(body.encode())
    assert_well_formed(content, body.encode())
    assert content is None or content.pages == []


@settings(max_examples=60, deadline=None)
@given(urlsets(), st.booleans())
@example((b"\xef\xbb\xbf<urlset><url><loc>/x</loc></url></urlset>", ["http://a.test/x"], []), False)
def test_a_urlset_gives_its_pages_and_images_in_order(
    generated: tuple[bytes, list[str], list[tuple[str, str]]], packed: bool
) -> None:
    body, pages, images = generated
    content = parse_sitemap(gzip.compress(body) if packed else body, BASE)
    assert (content.pages, content.images, content.sitemaps) == (pages, images, [])
    assert not content.cut_short


@settings(max_examples=40, deadline=None)
@given(st.lists(SAFE_URLS, max_size=8), st.booleans(), st.data())
def test_an_index_and_a_text_sitemap_give_their_urls_in_order(
    urls: list[str], namespaced: bool, data: st.DataObject
) -> None:
    expected = [normalize(url) for url in urls]
    index = "".join(f"<sitemap><loc>{loc_text(data.draw, url)}</loc></sitemap>" for url in urls)
    body = f"<sitemapindex {NS if namespaced else ''}>{index}</sitemapindex>".encode()
    assert parse_sitemap(body, BASE).sitemaps == expected
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(f"  {url} " for url in urls) + newline
    assert parse_sitemap(text.encode(), BASE).pages == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(SAFE_URLS, max_size=12), st.integers(1, 5))
def test_entries_are_bounded_and_the_bound_is_said(urls: list[str], bound: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sitemaps, "MAX_SITEMAP_URLS", bound)
        content = parse_sitemap("\n".join(urls).encode(), BASE)
    assert content.pages == [normalize(url) for url in urls][:bound]
    assert content.cut_short == (len(urls) > bound)


# -- ungzip ---------------------------------------------------------------------------

LIMITS = st.integers(min_value=1, max_value=3000)  # 0 means no limit to zlib: not used


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), LIMITS)
def test_what_is_not_gzip_is_cut_at_the_limit(body: bytes, limit: int) -> None:
    if body.startswith(sitemaps.GZIP_MAGIC):
        body = body[1:]
    assert ungzip(body, limit) == (body[:limit], len(body) > limit)


@st.composite
def gzip_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, int, str]:
    """A gzip body (one or more members, maybe cut or followed by junk), what gunzip
    makes of all of it before the cut, how many members it had and what followed."""
    members = draw(
        st.lists(st.one_of(st.binary(max_size=500), st.just(b"x" * 5000)), min_size=1, max_size=3)
    )
    level = draw(st.integers(0, 9))
    body = b"".join(gzip.compress(member, compresslevel=level) for member in members)
    tail = draw(st.sampled_from(["", "cut", "junk"]))
    if tail == "cut":
        body = body[: draw(st.integers(2, len(body)))]
    elif tail == "junk":  # not a gzip member: ignored, as gunzip does
        body += draw(st.binary(min_size=1, max_size=20).filter(lambda junk: junk[:1] != b"\x1f"))
    return body, b"".join(members), len(members), tail


@settings(max_examples=100, deadline=None)
@given(gzip_bodies(), LIMITS)
@example((gzip.compress(b"/1\n") + gzip.compress(b"/2\n"), b"/1\n/2\n", 2, ""), 100)  # said nothing
def test_ungzip_gives_at_most_limit_bytes_of_the_gunzipped_body(
    generated: tuple[bytes, bytes, int, str], limit: int
) -> None:
    body, whole, members, tail = generated
    try:
        data, cut = ungzip(body, limit)
    except NotASitemap:
        return
    assert len(data) <= limit
    assert whole.startswith(data), "not what gunzip gives"
    if tail == "cut":
        return  # (cut on a member's end, it is that much gzip: no error)
    if not cut:
        assert data == whole, "less than all of it, and not said"
    else:
        assert len(data) == limit or members > 1, "cut, but not at the limit nor a member"


@settings(max_examples=10, deadline=None)
@given(st.integers(10**5, 2 * 10**6), st.integers(1, 10**4), st.sampled_from([b"\0", b"/p\n"]))
def test_a_gzip_bomb_gives_only_limit_bytes(size: int, limit: int, unit: bytes) -> None:
    bomb = gzip.compress(unit * size, compresslevel=9)
    data, cut = ungzip(bomb, limit)
    assert data == (unit * size)[:limit] and cut
