from crawler.harvest.recrawl import (
    CHANGED,
    GONE,
    NEW,
    NOT_MODIFIED,
    UNCHANGED,
    compare,
    page_outcome,
    parse_refs,
    refs_json,
    write_report,
)

A = refs_json([("http://s/1.png", "img_src"), ("http://s/2.png", "css")], ["http://s/b"])


def test_refs_round_trip_and_bad_rows_read_as_nothing():
    assert parse_refs(A) == (
        [("http://s/1.png", "img_src"), ("http://s/2.png", "css")],
        ["http://s/b"],
    )
    for bad in ("", None, "not json", "[1, 2]", '{"images": [1]}'):
        assert parse_refs(bad) == ([], [])


def test_page_outcome():
    reordered = refs_json(
        [("http://s/2.png", "css"), ("http://s/1.png", "img_src")], ["http://s/b"]
    )
    assert page_outcome(reordered, A) == UNCHANGED
    assert page_outcome(refs_json([("http://s/1.png", "img_src")], ["http://s/b"]), A) == CHANGED
    assert page_outcome(refs_json([], ["http://s/c"]), refs_json([], ["http://s/b"])) == CHANGED
    assert page_outcome(A, None) == NEW


def test_compare_finds_images_no_page_references_any_more(tmp_path):
    pages = [
        ("http://s/a", A, A, NOT_MODIFIED),
        ("http://s/b", refs_json([("http://s/3.png", "img_src")], []), A, CHANGED),
        ("http://s/c", "", refs_json([("http://s/4.png", "img_src")], []), GONE),
        ("http://s/d", refs_json([], []), None, NEW),
    ]
    report = compare(2, pages, ["http://s/3.png"])
    assert report.pages == {NOT_MODIFIED: 1, CHANGED: 1, GONE: 1, NEW: 1}
    assert report.gone_images == ["http://s/4.png"]  # 1 and 2 are still on page a
    assert report.changed_pages == ["http://s/b"] and report.gone_pages == ["http://s/c"]
    assert report.line().startswith("recrawl 2: pages 1 not modified, 1 changed, 0 unchanged")
    path = write_report(tmp_path, report)
    assert path.read_text().startswith("{") and not list(tmp_path.glob("*.partial"))
