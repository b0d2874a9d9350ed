"""What a page says of its images, and which candidates are variants of one picture."""

from __future__ import annotations

import pytest

from crawler.web.describe import (
    CONTEXT_CHARS,
    MAX_TEXT,
    clean_text,
    describe_page,
    descriptor_size,
)
from crawler.web.extract import extract_page

PAGE = "http://site.test/gallery/"

GALLERY = """<!doctype html><html lang="en"><head><title> My
  Gallery </title><base href="http://site.test/g/"></head><body>
<p>Intro text about cats and dogs.</p>
<figure><img src="a.jpg" srcset="a-640.jpg 640w, a-1280.jpg 1280w" alt=" A  cat "
  title="Tom"><figcaption>The <b>cat</b> sleeps</figcaption></figure>
<picture><source srcset="p.webp 1x, p2.webp 2x" type="image/webp">
  <img src="p.jpg" alt="pic" lang="fr"></picture>
<p>After text.</p><a href="big.png" title="Big">Full size</a>
<img data-src="lazy.jpg" src="ph.gif" data-srcset="lazy2.jpg 2x">
<script>var words = "never context";</script><style>p { color: red }</style>
<input type="image" src="button.png" alt="Go">
<video poster="poster.jpg" title="Clip"></video>
</body></html>"""


def test_each_image_has_its_alt_title_caption_and_language():
    description = describe_page(GALLERY, PAGE)
    assert description.page_title == "My Gallery"
    assert description.lang == "en"
    cat = description.images["http://site.test/g/a.jpg"]
    assert (cat.alt, cat.title, cat.caption, cat.lang) == ("A cat", "Tom", "The cat sleeps", "en")
    assert description.images["http://site.test/g/a-640.jpg"].caption == "The cat sleeps"
    assert description.images["http://site.test/g/p2.webp"].alt == "pic"  # a source: its img's
    assert description.images["http://site.test/g/p.webp"].lang == "fr"
    link = description.images["http://site.test/g/big.png"]
    assert (link.alt, link.title) == ("Full size", "Big")  # an image link: its text
    assert description.images["http://site.test/g/button.png"].alt == "Go"
    assert description.images["http://site.test/g/poster.jpg"].title == "Clip"


def test_context_is_the_text_around_the_image_without_scripts_or_styles():
    cat = describe_page(GALLERY, PAGE).images["http://site.test/g/a.jpg"]
    assert cat.context is not None
    assert cat.context.startswith("Intro text about cats and dogs.")
    assert "After text." in cat.context
    assert "never context" not in cat.context and "color" not in cat.context
    assert "<" not in cat.context


def test_context_is_bounded_and_cut_at_words():
    before, after = "alpha " * 200, "omega " * 200
    page = f"<p>{before}</p><img src='x.jpg'><p>{after}</p>"
    context = describe_page(page, PAGE).images["http://site.test/gallery/x.jpg"].context
    assert context is not None
    assert len(context) <= 2 * CONTEXT_CHARS
    assert set(context.split()) == {"alpha", "omega"}  # no word cut in two


def test_texts_are_bounded_and_plain():
    alt = "word " * 1000
    page = f"<figure><img src='x.jpg' alt='{alt}'><figcaption><i>{alt}</i></figcaption></figure>"
    text = describe_page(page, PAGE).images["http://site.test/gallery/x.jpg"]
    assert text.alt is not None and len(text.alt) <= MAX_TEXT
    assert text.caption is not None and len(text.caption) <= MAX_TEXT
    assert "<i>" not in text.caption


def test_the_largest_candidate_of_each_picture():
    description = describe_page(GALLERY, PAGE)
    g = "http://site.test/g/"
    assert description.alternatives == {
        g + "a.jpg": g + "a-1280.jpg",
        g + "a-640.jpg": g + "a-1280.jpg",
        g + "p.webp": g + "p2.webp",
        g + "p.jpg": g + "p2.webp",
        g + "lazy.jpg": g + "lazy2.jpg",  # the lazy forms stand for src and srcset
    }
    assert description.images[g + "a-640.jpg"].descriptor == "640w"
    assert description.images[g + "a.jpg"].picture == g + "a-1280.jpg"
    assert description.images[g + "big.png"].picture is None  # not a candidate


@pytest.mark.parametrize(
    ("descriptors", "largest"),
    [
        (["", "2x", "1.5x"], 1),
        (["", "320w", "800w", "640w"], 2),
        (["3x", "100w"], 1),  # a width beats any density
        (["", ""], 0),  # a tie: the first
        (["2x", "junk", "2x"], 0),
    ],
)
def test_descriptor_ranking(descriptors, largest):
    ranks = [descriptor_size(d) for d in descriptors]
    assert max(range(len(ranks)), key=lambda i: (ranks[i], -i)) == largest


def test_a_url_largest_somewhere_is_never_an_alternative():
    page = (
        '<img src="s.jpg" srcset="m.jpg 2x">'  # m largest here
        '<img src="m.jpg" srcset="l.jpg 2x">'  # m an alternative of l here
    )
    alternatives = describe_page(page, PAGE).alternatives
    assert "http://site.test/gallery/m.jpg" not in alternatives
    assert alternatives == {"http://site.test/gallery/s.jpg": "http://site.test/gallery/m.jpg"}


def test_extract_with_largest_keeps_one_candidate_per_picture():
    html = GALLERY.encode()
    every = {ref.url for ref in extract_page(html, PAGE).images}
    largest = extract_page(html, PAGE, largest=True)
    kept = {ref.url for ref in largest.images}
    g = "http://site.test/g/"
    assert every - kept == {g + "a.jpg", g + "a-640.jpg", g + "p.webp", g + "p.jpg", g + "lazy.jpg"}
    assert {g + "a-1280.jpg", g + "p2.webp", g + "lazy2.jpg", g + "big.png"} <= kept
    assert g + "ph.gif" in kept  # a placeholder is not a candidate of the lazy image
    assert largest.description is not None  # the alternatives are recorded


def test_extract_does_not_describe_unless_asked():
    assert extract_page(GALLERY.encode(), PAGE).description is None
    assert extract_page(GALLERY.encode(), PAGE, describe=True).description is not None


@pytest.mark.parametrize("page", ["", "   ", "<html>", "<img>", "<img srcset=', ,'>", "\x00<p>"])
def test_odd_pages_describe_to_little(page):
    description = describe_page(page, PAGE)
    assert description.alternatives == {}


def test_clean_text():
    assert clean_text("  a \n\t b ") == "a b"
    assert clean_text("") is None and clean_text("   ") is None and clean_text(None) is None
    assert clean_text("one two three", 8) == "one two"
