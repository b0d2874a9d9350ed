"""The reference for ``extract._elements``: BeautifulSoup's whole tree of the page.

This is how extraction read pages before ``compat.bs4.parse_kept`` built only the
elements it reads; ``same_extraction`` checks that both give the same images, links
and style sheets.
"""

from __future__ import annotations

from bs4 import BeautifulSoup

from crawler.web import extract


def whole_tree_elements(text: str) -> list[extract._Element]:
    """Every element of the page in document order, minus ``<template>`` content."""
    if not text.strip():
        return []
    soup = BeautifulSoup(text.replace("\x00", "\ufffd"), "lxml", multi_valued_attributes=None)
    inert = {id(node) for template in soup.find_all("template") for node in template.find_all(True)}
    return [
        extract._Element(
            tag.name,
            {
                name: " ".join(value) if isinstance(value, list) else value
                for name, value in tag.attrs.items()
            },
            tag.get_text() if tag.name == "style" else "",
        )
        for tag in soup.find_all(True)
        if id(tag) not in inert
    ]


def collected(elements: list[extract._Element]) -> tuple:
    """What a collector finds in ``elements`` (bases included), for comparison."""
    collector = extract._Collector("http://example.com/dir/page.html")
    for element in elements:
        collector.visit(element)
    content = collector.finish()
    bases = [e.get("href") for e in elements if e.tag == "base"]
    return (
        [(ref.url, ref.kind) for ref in content.images],
        content.links,
        content.stylesheets,
        content.nofollow_links,
        collector.style_rules,
        bases[:1],
    )


def same_extraction(text: str) -> bool:
    return collected(extract._elements(text)) == collected(whole_tree_elements(text))
