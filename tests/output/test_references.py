"""OUT/references.jsonl: one line per (image, page), whole or absent, read back once per
(image, page) with the opt-outs of every page."""

from __future__ import annotations

import json

from crawler.output.references import REFERENCES_NAME, References, read_references, reference_rows
from crawler.web.describe import describe_page
from crawler.web.extract import ImageRef

PAGE = "http://site.test/page.html"
HTML = (
    '<html lang="de"><title>Seite</title><figure><img src="a.jpg" srcset="b.jpg 2x" '
    'alt="Ein Bild"><figcaption>Unten</figcaption></figure></html>'
)


def test_rows_carry_the_page_text_and_the_variants_left_out():
    description = describe_page(HTML, PAGE)
    rows = reference_rows(PAGE, [ImageRef("http://site.test/b.jpg", "srcset")], description, None)
    shown, variant = rows
    assert shown == {
        "url": "http://site.test/b.jpg",
        "page": PAGE,
        "kind": "srcset",
        "alt": "Ein Bild",
        "caption": "Unten",
        "context": "Unten",
        "lang": "de",
        "page_title": "Seite",
        "descriptor": "2x",
        "picture": "http://site.test/b.jpg",
    }
    assert variant["url"] == "http://site.test/a.jpg"
    assert variant["kind"] == "variant" and variant["variant_of"] == "http://site.test/b.jpg"


def test_rows_without_a_description_and_an_opt_out():
    rows = reference_rows(
        PAGE, [ImageRef("http://site.test/x.png", "css")], None, "meta robots: noai"
    )
    assert rows == [
        {
            "url": "http://site.test/x.png",
            "page": PAGE,
            "kind": "css",
            "opt_out": "meta robots: noai",
        }
    ]


def test_no_file_until_a_line_is_written(tmp_path):
    references = References(tmp_path)
    references.write([])
    references.close()
    assert not (tmp_path / REFERENCES_NAME).exists()


def test_read_back_once_per_image_and_page_with_any_opt_out(tmp_path):
    references = References(tmp_path)
    image = "http://site.test/a.jpg"
    references.write(
        [{"url": image, "page": "http://site.test/1", "kind": "img_src", "alt": "one"}]
    )
    # The same page again (fetched again after a crash), and another page.
    references.write(
        [{"url": image, "page": "http://site.test/1", "kind": "img_src", "alt": "one"}]
    )
    references.write(
        [{"url": image, "page": "http://site.test/2", "kind": "img_src", "opt_out": "x: noai"}]
    )
    references.close()
    with (tmp_path / REFERENCES_NAME).open("a") as handle:
        handle.write('{"url": "torn')  # a crash's torn last line
    found = read_references(tmp_path)
    assert set(found) == {image}
    assert len(found[image].pages) == 2
    assert found[image].opt_out == "x: noai"
    assert found[image].row["alt"] == "one"  # the line no opt-out marks


def test_a_torn_line_is_repaired_before_appending(tmp_path):
    (tmp_path / REFERENCES_NAME).write_text('{"url": "a", "page": "p"}\n{"url": "to')
    references = References(tmp_path)
    references.write([{"url": "b", "page": "p", "kind": "img_src"}])
    references.close()
    lines = (tmp_path / REFERENCES_NAME).read_text().splitlines()
    assert [json.loads(line)["url"] for line in lines] == ["a", "b"]
