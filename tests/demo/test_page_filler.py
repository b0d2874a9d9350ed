"""Tests for padding the demo site's pages to real sizes (`generate_site(page_bytes=...)`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup, Comment

from crawler.demo.site import generate_site, main
from crawler.web.extract import extract_page
from tests.support.files import tree_hashes

SITE = "http://127.0.0.1:8000"
SMALL = {"pages": 20, "images": 40, "seed": 5}
PAGE_BYTES = (30000, 60000)
# Markup that could make a crawler find an image, a frame or another host: the filler
# adds none of it, so each occurs as often in a padded page as in the page unpadded.
IMAGE_MARKERS = (
    "<img",
    "<picture",
    "<source",
    "srcset",
    "data-src",
    "data-lazy",
    "data-original",
    "data-url",
    "url(",
    "image-set",
    "<video",
    "poster",
    "<svg",
    "<image",
    "<use",
    "<link",
    "og:image",
    "twitter:image",
    "background=",
    "<iframe",
    "<frame",
    "<object",
    "<embed",
    '<input type="image',
    "<base",
    'href="http',
    'src="',
    ".jpg",
    ".png",
    ".gif",
    ".webp",
)


def pages_of(root: Path, truth: dict) -> dict[str, bytes]:
    return {page: (root / page.lstrip("/")).read_bytes() for page in truth["pages"]}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path, dict]:
    plain_root, padded_root = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("padded")
    plain = generate_site(plain_root, **SMALL)
    padded = generate_site(padded_root, **SMALL, page_bytes=PAGE_BYTES)
    return plain_root, plain, padded_root, padded


def test_padding_keeps_the_ground_truth_and_every_other_file(sites) -> None:
    plain_root, plain, padded_root, padded = sites
    assert padded.pop("page_bytes") == list(PAGE_BYTES)
    assert padded == plain
    on_disk = json.loads((padded_root / "ground_truth.json").read_text())
    assert on_disk == {**plain, "page_bytes": list(PAGE_BYTES)}
    untouched = {
        name: digest
        for name, digest in tree_hashes(plain_root).items()
        if not name.endswith(".html") and name != "ground_truth.json"
    }
    assert untouched.items() <= tree_hashes(padded_root).items()


def test_padded_pages_show_the_same_images_and_link_only_to_site_pages(sites) -> None:
    plain_root, plain, padded_root, _ = sites
    site_pages = {SITE + page for page in plain["pages"]}
    plain_pages, padded_pages = pages_of(plain_root, plain), pages_of(padded_root, plain)
    extra_links = 0
    for page in plain["pages"]:
        before = extract_page(plain_pages[page], SITE + page)
        after = extract_page(padded_pages[page], SITE + page)
        assert after.images == before.images, page
        assert set(before.links) <= set(after.links), page
        extra = set(after.links) - set(before.links)
        assert extra <= site_pages, (page, extra - site_pages)
        extra_links += len(extra)
        assert (after.stylesheets, after.nofollow_links) == (
            before.stylesheets,
            before.nofollow_links,
        )
    assert extra_links > 5 * len(plain["pages"])  # the filler does link the site's pages


def test_filler_adds_no_image_frame_or_external_markup(sites) -> None:
    plain_root, plain, padded_root, _ = sites
    plain_pages, padded_pages = pages_of(plain_root, plain), pages_of(padded_root, plain)
    for page in plain["pages"]:
        before, after = plain_pages[page].decode(), padded_pages[page].decode()
        for marker in IMAGE_MARKERS:
            assert after.count(marker) == before.count(marker), (page, marker)


def test_padded_pages_have_sizes_from_the_range(sites) -> None:
    plain_root, plain, padded_root, _ = sites
    plain_pages, padded_pages = pages_of(plain_root, plain), pages_of(padded_root, plain)
    sizes = sorted(len(html) for html in padded_pages.values())
    assert PAGE_BYTES[0] <= sizes[0] and sizes[-1] <= PAGE_BYTES[1]
    assert sizes[-1] - sizes[0] > 10000  # spread over the range, not bunched
    for page, html in padded_pages.items():
        assert len(html) > len(plain_pages[page])
        html.decode("utf-8")  # strict: valid UTF-8


def test_padded_pages_look_like_real_pages(sites) -> None:
    _, plain, padded_root, _ = sites
    for page, raw in pages_of(padded_root, plain).items():
        text = raw.decode()
        soup = BeautifulSoup(text, "lxml")
        assert soup.head.style is not None and soup.find("h1").find_previous("header")
        assert 30 <= len(soup.select("nav.mega-menu a")) <= 80
        assert soup.select("nav.mega-menu ul ul li a")  # nested menu lists
        assert soup.select("nav.breadcrumb a")
        toc = [a["href"] for a in soup.select("nav.toc a")]
        assert toc and all(href.startswith("#sec-") for href in toc)
        id_list = [tag["id"] for tag in soup.find_all(id=True)]
        ids = set(id_list)
        assert len(ids) == len(id_list), page  # no id twice
        anchors = {a["href"][1:] for a in soup.find_all("a", href=True) if a["href"][0] == "#"}
        assert anchors <= ids, anchors - ids
        assert 10 <= len(soup.select("table thead + tbody > tr")) <= 40
        assert soup.select("form input[type=text]") and soup.select("form select")
        assert soup.select("form button")
        assert soup.select("footer a") and soup.select("main section p a")
        assert soup.select("p em") and soup.select("p strong") and soup.select("p code")
        assert soup.select("p span[class]")
        assert soup.select("[style]") and soup.select("[data-track]") and soup.select("[data-id]")
        assert soup.select("[data-role]")
        json.loads(soup.find("script", type="application/ld+json").string)
        scripts = [s.string for s in soup.find_all("script") if not s.get("type")]
        assert sum(len(s) for s in scripts) > 2000 and not any("<" + "/" in s for s in scripts)
        assert soup.find_all(string=lambda node: isinstance(node, Comment))
        for reference in ("&amp;", "&nbsp;", "&#8217;"):
            assert reference in text, (page, reference)
        assert any(ord(char) > 127 for char in text)
        hrefs = [a["href"] for a in soup.find_all("a", href=True)]
        assert any(h.startswith("/pages/") for h in hrefs)  # root-relative spellings
        assert any(not h.startswith(("/", "#")) for h in hrefs)  # and page-relative ones


def test_padding_is_deterministic(sites, tmp_path: Path) -> None:
    _, _, padded_root, padded = sites
    again = generate_site(tmp_path / "again", **SMALL, page_bytes=PAGE_BYTES)
    assert again == {**padded, "page_bytes": list(PAGE_BYTES)}
    assert tree_hashes(tmp_path / "again") == tree_hashes(padded_root)


def test_small_targets_never_cut_a_page(sites, tmp_path: Path) -> None:
    """Targets below a page's content leave it as it is; a little above, part of the
    frame fits and the page still has the target size and the same images."""
    plain_root, plain, _, _ = sites
    generate_site(tmp_path / "one", **SMALL, page_bytes=(1, 1))
    assert pages_of(tmp_path / "one", plain) == pages_of(plain_root, plain)

    low, high = 2000, 7000
    generate_site(tmp_path / "small", **SMALL, page_bytes=(low, high))
    plain_pages = pages_of(plain_root, plain)
    for page, html in pages_of(tmp_path / "small", plain).items():
        before = plain_pages[page]
        assert html == before or (low <= len(html) <= high and len(html) > len(before))
        after = extract_page(html, SITE + page)
        assert after.images == extract_page(before, SITE + page).images


def test_default_pages_have_no_filler(sites) -> None:
    plain_root, plain, _, _ = sites
    for html in pages_of(plain_root, plain).values():
        assert b"mega-menu" not in html and b"<script" not in html and b"<style" not in html
    assert "page_bytes" not in json.loads((plain_root / "ground_truth.json").read_text())


def test_bad_page_bytes_are_refused(tmp_path: Path) -> None:
    for page_bytes in ((60000, 30000), (0, 1000)):
        with pytest.raises(ValueError):
            generate_site(tmp_path / "bad", pages=2, images=4, page_bytes=page_bytes)


def test_page_kb_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "flag"
    argv = ["generate", str(root), "--pages", "3", "--images", "6", "--page-kb", "30-40"]
    assert main(argv) == 0
    truth = json.loads((root / "ground_truth.json").read_text())
    assert truth["page_bytes"] == [30000, 40000]
    assert all(30000 <= len(html) <= 40000 for html in pages_of(root, truth).values())
    capsys.readouterr()
    for bad in ("abc", "50-10", "0-10", "30", "30-", "-30", "1.5-3"):
        with pytest.raises(SystemExit) as exited:
            main(["generate", str(tmp_path / "bad"), "--page-kb", bad])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "--page-kb" in err and "want LOW-HIGH KB" in err, err


def test_page_kb_flag_rejects_a_bad_range_without_a_traceback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "crawler.demo.site", "generate", str(tmp_path / "s")]
    done = subprocess.run(
        [*command, "--page-kb", "abc"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "want LOW-HIGH KB" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()
