"""Extraction from the kept elements equals extraction from BeautifulSoup's whole tree,
on the browser check's pages and the demo site's (``tests.support.whole_tree``)."""

from __future__ import annotations

import pytest

from crawler.demo.site import generate_site
from crawler.web.extract import decode_html
from tests.browser_site.site import build_site
from tests.support.whole_tree import collected, same_extraction, whole_tree_elements

BROWSER_PAGES = {
    path: body
    for path, body in build_site("http://127.0.0.1:8000").files.items()
    if path.endswith(".html")
}


@pytest.mark.parametrize("path", sorted(BROWSER_PAGES))
def test_browser_check_pages(path: str) -> None:
    assert same_extraction(decode_html(BROWSER_PAGES[path]))


@pytest.mark.parametrize("page_bytes", [None, (30000, 90000)], ids=["own", "real-sized"])
def test_demo_site_pages(tmp_path, page_bytes) -> None:
    truth = generate_site(tmp_path, pages=12, images=60, page_bytes=page_bytes)
    for page in truth["pages"]:
        text = (tmp_path / page.lstrip("/")).read_text(encoding="utf-8")
        assert same_extraction(text), page
        assert collected(whole_tree_elements(text))[0], "each demo page shows images"
