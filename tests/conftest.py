"""Checks every page the in-process tests extract against the whole-tree reference;
fixtures several test folders share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from crawler.web import extract
from tests.support.tls import PrivateSite, serve_private_site
from tests.support.whole_tree import collected, whole_tree_elements

# Property tests: no per-example deadline (a loaded CI machine is slow, not wrong).
settings.register_profile("crawler", deadline=None, print_blob=True)
settings.load_profile("crawler")


@pytest.fixture
def private_site(tmp_path: Path) -> Iterator[PrivateSite]:
    """A demo site over HTTPS, its certificate signed by a private CA of the test's."""
    yield from serve_private_site(tmp_path)


@pytest.fixture(autouse=True)
def _extraction_matches_the_whole_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page parsed in a test's process is also read from BeautifulSoup's whole
    tree; the two must find the same images, links and style sheets."""
    kept_elements = extract._elements

    def checked(text: str) -> list[extract._Element]:
        elements = kept_elements(text)
        assert collected(elements) == collected(whole_tree_elements(text)), text[:300]
        return elements

    monkeypatch.setattr(extract, "_elements", checked)
