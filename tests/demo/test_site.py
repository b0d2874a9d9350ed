"""Tests for the deterministic demo site generator and its static server."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from PIL import Image

from crawler.demo.server import serve
from crawler.demo.site import generate_site
from tests.support.files import tree_hashes

REPO = Path(__file__).resolve().parents[1]
IMAGE_EXTS = (".jpg", ".png", ".gif", ".webp")
BASE = "http://demo.test"
DEMOSITE = [sys.executable, "-m", "crawler.demo.site"]


class RefParser(HTMLParser):
    """Independent extractor: records (url_path, markup kind) image references and page links."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.page = page
        self.images: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.raw_image_urls: list[str] = []
        self.in_picture = False

    def _add_image(self, url: str, kind: str) -> None:
        self.raw_image_urls.append(url)
        if not url.startswith("data:"):
            self.images.append((self._resolve(url), kind))

    def _resolve(self, url: str) -> str:
        return urlsplit(urljoin(BASE + self.page, url)).path

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "picture":
            self.in_picture = True
        elif tag == "source" and self.in_picture:
            for cand in a["srcset"].split(","):
                self._add_image(cand.split()[0], "picture")
        elif tag == "img":
            kind = "picture" if self.in_picture else "lazy" if "data-src" in a else "img_src"
            if "srcset" in a and kind == "img_src":
                kind = "srcset"
            candidates = [c.split()[0] for c in a.get("srcset", "").split(",") if c.strip()]
            for url in [a["src"], a.get("data-src", ""), *candidates]:
                if url:
                    self._add_image(url, kind)
        elif tag == "a":
            href = a["href"]
            if href.endswith(IMAGE_EXTS):
                self._add_image(href, "link")
            elif urlsplit(href).scheme:
                self.links.append(href)
            else:
                self.links.append(self._resolve(href))

    def handle_endtag(self, tag: str) -> None:
        if tag == "picture":
            self.in_picture = False


def parse_site(root: Path, truth: dict) -> dict[str, RefParser]:
    parsed = {}
    for page in truth["pages"]:
        parser = RefParser(page)
        parser.feed((root / page.lstrip("/")).read_text(encoding="utf-8"))
        parsed[page] = parser
    return parsed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("site")
    started = time.monotonic()
    truth = generate_site(root)
    assert time.monotonic() - started < 5
    return root, truth


@pytest.fixture(scope="module")
def parsed(site: tuple[Path, dict]) -> dict[str, RefParser]:
    return parse_site(*site)


@pytest.fixture
def server(site: tuple[Path, dict], tmp_path: Path):
    log = tmp_path / "access.log"
    srv = serve(site[0], access_log=log)
    srv.log_path = log
    try:
        yield srv
    finally:
        srv.close()


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


# ---------------------------------------------------------------- generator


def test_generation_is_deterministic(site: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = site
    again = generate_site(tmp_path / "again")
    assert again == truth
    assert tree_hashes(tmp_path / "again") == tree_hashes(root)


def test_seed_changes_the_site(site: tuple[Path, dict], tmp_path: Path) -> None:
    other = generate_site(tmp_path / "other", pages=5, images=20, seed=2)
    assert {i["sha256"] for i in other["images"]}.isdisjoint(
        {i["sha256"] for i in site[1]["images"]}
    )


def test_ground_truth_file_and_shape(site: tuple[Path, dict]) -> None:
    root, truth = site
    assert json.loads((root / "ground_truth.json").read_text()) == truth
    assert truth["seed"] == 1
    assert len(truth["pages"]) == 30 and truth["pages"][0] == "/index.html"
    assert len(truth["images"]) == 300
    assert len(truth["broken_images"]) == 3
    paths = [i["path"] for i in truth["images"]]
    assert len(set(paths)) == len(paths)


def test_ground_truth_matches_files(site: tuple[Path, dict]) -> None:
    root, truth = site
    for entry in truth["images"]:
        data = (root / entry["path"].lstrip("/")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        with Image.open(root / entry["path"].lstrip("/")) as img:
            assert img.format == entry["format"]
            assert img.size == (entry["width"], entry["height"])
        assert 16 <= entry["width"] <= 200 and 16 <= entry["height"] <= 160
    for page in truth["pages"]:
        assert (root / page.lstrip("/")).is_file()
    for missing in truth["broken_pages"] + truth["broken_images"]:
        assert not (root / missing.lstrip("/")).exists()
    assert (root / "files/readme.txt").is_file()


def test_formats_spread_evenly(site: tuple[Path, dict]) -> None:
    counts = Counter(i["format"] for i in site[1]["images"])
    assert set(counts) == {"JPEG", "PNG", "GIF", "WEBP"}
    assert min(counts.values()) >= 60


def test_exactly_one_duplicate_pair(site: tuple[Path, dict]) -> None:
    truth = site[1]
    by_hash = Counter(i["sha256"] for i in truth["images"])
    assert sorted(by_hash.values(), reverse=True)[:2] == [2, 1]
    assert truth["distinct_contents"] == len(by_hash) == len(truth["images"]) - 1


def test_every_markup_kind_has_a_good_share(site: tuple[Path, dict]) -> None:
    counts = Counter(i["markup"] for i in site[1]["images"])
    assert set(counts) == {"img_src", "srcset", "picture", "lazy", "link"}
    assert min(counts.values()) >= 30


def test_html_references_match_ground_truth(
    site: tuple[Path, dict], parsed: dict[str, RefParser]
) -> None:
    truth = site[1]
    referenced = {path for p in parsed.values() for path, _ in p.images}
    assert referenced == {i["path"] for i in truth["images"]} | set(truth["broken_images"])
    first_kind: dict[str, str] = {}
    for page in truth["pages"]:
        for path, kind in parsed[page].images:
            first_kind.setdefault(path, kind)
    assert {i["path"]: i["markup"] for i in truth["images"]} == {
        p: k for p, k in first_kind.items() if p not in truth["broken_images"]
    }


def test_both_relative_and_root_relative_urls_used(parsed: dict[str, RefParser]) -> None:
    raw = [u for p in parsed.values() for u in p.raw_image_urls if not u.startswith("data:")]
    assert any(u.startswith("/img/") for u in raw)
    assert any(u.startswith("../img/") for u in raw)


def test_data_placeholder_is_not_an_image(
    site: tuple[Path, dict], parsed: dict[str, RefParser]
) -> None:
    raw = [u for p in parsed.values() for u in p.raw_image_urls]
    assert any(u.startswith("data:image/gif;base64,") for u in raw)
    assert not any("data:" in i["path"] for i in site[1]["images"])


def test_some_images_are_referenced_from_several_pages(
    site: tuple[Path, dict], parsed: dict[str, RefParser]
) -> None:
    pages_of: dict[str, set[str]] = {}
    for page, p in parsed.items():
        for path, _ in p.images:
            pages_of.setdefault(path, set()).add(page)
    shared = [path for path, pages in pages_of.items() if len(pages) >= 2]
    assert 0.08 * len(site[1]["images"]) <= len(shared) <= 0.2 * len(site[1]["images"])


def test_page_graph(site: tuple[Path, dict], parsed: dict[str, RefParser]) -> None:
    truth = site[1]
    pages = set(truth["pages"])
    depth = {"/index.html": 0}
    frontier = ["/index.html"]
    for hop in (1, 2):
        frontier = [
            link
            for page in frontier
            for link in parsed[page].links
            if link in pages and link not in depth
        ]
        depth.update(dict.fromkeys(frontier, hop))
    assert set(depth) == pages
    all_links = {link for p in parsed.values() for link in p.links}
    assert "http://example.invalid/page.html" in all_links
    assert "/files/readme.txt" in all_links
    assert set(truth["broken_pages"]) <= all_links
    for page in truth["pages"][1:]:
        assert "/index.html" in parsed[page].links


def test_sized_images_fall_in_the_asked_range(tmp_path: Path) -> None:
    """The benchmark's 2-80 KB images: each about a size drawn from the range, real
    images of their format, and the same bytes for the same seed."""
    truth = generate_site(tmp_path / "sized", pages=2, images=40, image_bytes=(2000, 80000))
    sizes = sorted(image["bytes"] for image in truth["images"])
    # One re-encode after a first guess lands within a few percent of each target.
    assert sizes[0] >= 2000 * 0.8 and sizes[-1] <= 80000 * 1.2
    assert 20000 <= sizes[len(sizes) // 2] <= 60000  # spread over the range, not bunched
    for image in truth["images"]:
        with Image.open(tmp_path / "sized" / image["path"].lstrip("/")) as opened:
            opened.load()
            assert (opened.format, opened.size) == (
                image["format"],
                (image["width"], image["height"]),
            )
    again = generate_site(tmp_path / "again", pages=2, images=40, image_bytes=(2000, 80000))
    assert again == truth
    with pytest.raises(ValueError):
        generate_site(tmp_path / "bad", images=4, image_bytes=(9000, 8000))


def test_image_bytes_flag_rejects_a_bad_range(tmp_path: Path) -> None:
    command = [*DEMOSITE, "generate", str(tmp_path / "s"), "--image-bytes", "80KB"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "want LOW-HIGH bytes" in done.stderr and "Traceback" not in done.stderr


def test_small_site_edge_cases(tmp_path: Path) -> None:
    truth = generate_site(tmp_path / "tiny", pages=1, images=2)
    assert truth["pages"] == ["/index.html"]
    assert truth["distinct_contents"] == 1 and len(truth["images"]) == 2
    with pytest.raises(ValueError):
        generate_site(tmp_path / "bad", images=1)


# ---------------------------------------------------------------- server


def test_serves_image_with_bytes_and_type(server, site: tuple[Path, dict]) -> None:
    truth = site[1]
    types = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
    for fmt, mime in types.items():
        entry = next(i for i in truth["images"] if i["format"] == fmt)
        status, body, ctype = get(server.url + entry["path"].lstrip("/"))
        assert (status, ctype) == (200, mime)
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_serves_html_and_text(server) -> None:
    status, body, ctype = get(server.url + "index.html")
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert b"<title>" in body
    assert get(server.url)[1] == body
    assert get(server.url + "files/readme.txt")[::2] == (200, "text/plain; charset=utf-8")


def test_broken_references_are_404(server, site: tuple[Path, dict]) -> None:
    truth = site[1]
    for path in truth["broken_images"] + truth["broken_pages"]:
        assert get(server.url + path.lstrip("/"))[0] == 404


def test_keep_alive_reuses_connection(server) -> None:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        for path in ("/index.html", "/img/missing-1.png", "/files/readme.txt"):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert int(resp.headers["Content-Length"]) == len(body)
            assert not resp.will_close
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/img/../../secret.txt"])
def test_path_traversal_refused(server, path: str) -> None:
    secret = server.root.parent / "secret.txt"
    secret.write_text("top secret")
    try:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status != 200
        assert b"top secret" not in body
    finally:
        secret.unlink()


def test_access_log_lines(server, site: tuple[Path, dict]) -> None:
    entry = site[1]["images"][0]
    get(server.url + entry["path"].lstrip("/"))
    get(server.url + "img/missing-1.png")
    lines = server.log_path.read_text().splitlines()
    assert lines == [f"GET {entry['path']} 200 {entry['bytes']}", "GET /img/missing-1.png 404 10"]


# ---------------------------------------------------------------- command line


def test_cli_generate(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *DEMOSITE,
            "generate",
            str(tmp_path / "s"),
            "--pages",
            "4",
            "--images",
            "12",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "4 pages, 12 images" in result.stdout
    assert json.loads((tmp_path / "s/ground_truth.json").read_text())["seed"] == 3


def test_cli_serve_until_sigterm(site: tuple[Path, dict], tmp_path: Path) -> None:
    port_file, log = tmp_path / "port", tmp_path / "access.log"
    proc = subprocess.Popen(
        [*DEMOSITE, "serve", str(site[0]), "--port-file", str(port_file), "--access-log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not write its port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert get(f"http://127.0.0.1:{port}/index.html")[0] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert err == ""
        assert out == f"serving http://127.0.0.1:{port}/\n"
        assert log.read_text().startswith("GET /index.html 200 ")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
