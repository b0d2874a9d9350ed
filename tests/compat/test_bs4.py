from crawler.compat.bs4 import parse_kept

KEEP_NAMES = frozenset({"a", "img", "style", "template"})


def keep(name, attributes):
    return name in KEEP_NAMES or "data-src" in attributes


def kept(html: str) -> list[tuple[str, str | None]]:
    soup, _names = parse_kept(html, keep, frozenset({"style"}), frozenset({"template"}))
    return [(tag.name, tag.parent.name) for tag in soup.find_all(True)]


def test_only_kept_elements_in_document_order_under_their_kept_ancestor():
    html = (
        "<!DOCTYPE html><html><body><div><p>text <a href=/x><span>in</span>"
        "<img src=a.png></a></p><div data-src=b.png><b>bold</b></div><img src=c.png></div>"
    )
    assert kept(html) == [
        ("a", "[document]"),
        ("img", "a"),
        ("div", "[document]"),
        ("img", "[document]"),
    ]


def test_text_only_inside_text_elements_and_attributes_as_written():
    soup, _names = parse_kept(
        '<p class="a  b">para</p><style>p { color: red }</style><a class="x y" href=/z>link</a>',
        keep,
        frozenset({"style"}),
        frozenset(),
    )
    style, anchor = soup.find_all(True)
    assert style.get_text() == "p { color: red }"
    assert anchor.get_text() == ""  # text outside style elements is not built
    assert anchor.attrs == {"class": "x y", "href": "/z"}  # not split into a list
    assert "para" not in str(soup)


def test_nothing_inside_an_inert_element_even_nested_ones():
    html = (
        "<template data-src=t.png><img src=in.png><template><a href=/deep></a></template>"
        "<a href=/in></a></template><img src=after.png><!-- <img src=comment.png> -->"
    )
    soup, _names = parse_kept(html, keep, frozenset(), frozenset({"template"}))
    found = [(tag.name, tag.get("src") or tag.get("href")) for tag in soup.find_all(True)]
    assert found == [("template", None), ("img", "after.png")]


def test_empty_and_markup_free_text():
    assert kept("") == []
    assert kept("just words, no tags") == []


def test_names_of_every_element_kept_or_not_but_none_inside_an_inert_one():
    html = (
        '<div id="top" class="card  wide"><p class="note">x</p><img class=pic src=a.png></div>'
        '<template><span id="hidden" class="inert"></span></template><section id=""></section>'
    )
    _soup, names = parse_kept(html, keep, frozenset(), frozenset({"template"}))
    assert {"div", "p", "img", "template", "section", "html", "body"} <= names.tags
    assert "span" not in names.tags
    assert names.ids - {""} == {"top"}
    assert names.classes == {"card", "wide", "note", "pic"}
