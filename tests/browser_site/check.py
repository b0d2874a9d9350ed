"""Recall and precision of our image extraction against what headless Chromium loads.

The issue's target: at least 99.5% of the same-origin images a browser loads are found,
and at least 99% of what we report are real images. A browser is the only honest
reference for "what a page shows", so this serves a fixture site (tests/browser_site/,
every markup kind and trap) on 127.0.0.1 and compares:

* found: what our own code reports, walking the site breadth-first with
  ``crawler.web.pages.fetch_page`` (style sheets included) from the fixture's index page;
* loaded: the image responses (200, ``image/*``) the server sent while headless
  Chromium rendered each visited page, one run at a time, at several viewports and
  pixel densities, so that every srcset candidate or ``<picture>`` branch some real
  device would pick gets loaded;
* real: every found URL fetched once; 200 and decodable by Pillow (SVG: served as
  ``image/svg+xml`` and parses as XML with an ``<svg>`` root).

recall = |found & loaded| / |loaded|, precision = |found & real| / |found| (references the
fixture declares broken on purpose, a 404 favicon, are left out: they are reported as
broken, not as images; ``precision_raw`` keeps them), shown = |found & loaded| / |found|.

The fixture also says, per image, what Chromium must and must not load and what we must
and must not report; every failed expectation is listed, so a harness bug shows up.

Usage:
    python -m tests.browser_site.check [--json FILE] [--keep DIR] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests
from lxml import etree
from PIL import Image

from crawler.config import load_config
from crawler.demo.server import LocalHTTPServer
from crawler.urls import host_of, normalize
from crawler.web.pages import PageResult, StylesheetCache, fetch_page

# A URL path's empty segment (``images//x.png``) is this folder on disk: a file system
# has no empty names, and collapsing ``//`` would hide a crawler that collapses it too.
EMPTY_SEGMENT = "@empty-segment@"
CONTENT_TYPES = {
    # No charset for HTML: pages declare their own (a BOM, a <meta charset>).
    ".html": "text/html",
    ".css": "text/css",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # only 127.0.0.1, whatever the environment says
)
VIRTUAL_TIME_MS = 2500
RUN_TIMEOUT = 30.0  # seconds of real time for one Chromium run
IDLE_TIMEOUT = 3.0  # seconds to wait for the server to finish a run's last requests
FETCH_TIMEOUT = 10.0
MAX_PAGES = 50
MAX_DEPTH = 4


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    scale: float

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}@{self.scale:g}x"


# A dense phone, a tall laptop at 1x and a tall wide screen at 2x: between them every
# density descriptor (1x, 2x, 3x), three widths around the usual media breakpoints, and
# room for loading=lazy images far down the page. Each run costs about a second (mostly
# Chromium starting), so three keep the check near half a minute.
VIEWPORTS = (
    Viewport(390, 844, 3),
    Viewport(1280, 3000, 1),
    Viewport(1680, 3000, 2),
)
PROBE_VIEWPORT = VIEWPORTS[1]


# ---------------------------------------------------------------- fixture types


@dataclass(frozen=True)
class FixtureImage:
    """One image (or trap) of the fixture site and what should happen to it."""

    path: str  # URL path and query as a browser resolves it, not percent-encoded
    loaded: bool | None  # Chromium loads it at some viewport; None: its heuristics decide
    found: bool | None  # our extraction reports it; None: either is right
    real: bool = True  # served, and a decodable image
    why: str = ""
    broken: bool = False  # a reference that 404s on purpose


@dataclass(frozen=True)
class FixturePage:
    path: str
    via: str  # how it is reached: "link", "iframe" or "frame"


@dataclass(frozen=True)
class Probe:
    """Markup beyond the fixture's list that Chromium loads and our extraction misses.

    Probes sit on one page no fixture page links to, so they stay out of the figures;
    the test keeps each as a strict xfail until the extraction finds it.
    """

    name: str
    markup: str
    images: tuple[str, ...]  # URL paths Chromium loads for it at PROBE_VIEWPORT
    why: str


@dataclass
class Site:
    files: dict[str, bytes]  # decoded URL path -> body
    images: list[FixtureImage]
    pages: list[FixturePage]
    probes: list[Probe] = field(default_factory=list)
    start: str = "/index.html"
    probe_page: str = "/probes.html"


def site_file(root: Path, url_path: str) -> Path | None:
    """The file serving a decoded URL path, or None when the path may not name one."""
    if not url_path.startswith("/") or "\x00" in url_path:
        return None
    *folders, name = url_path[1:].split("/")
    if any(segment in (".", "..") for segment in (*folders, name)):
        return None
    return root.joinpath(*(folder or EMPTY_SEGMENT for folder in folders), name or "index.html")


def write_site(site: Site, root: Path) -> None:
    for url_path, body in site.files.items():
        target = site_file(root, url_path)
        if target is None:
            raise ValueError(f"fixture path cannot be served: {url_path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


# ---------------------------------------------------------------- server


@dataclass(frozen=True)
class Request:
    run: str  # what was running: "walk", "real", or "PAGE VIEWPORT" for Chromium
    method: str
    target: str  # the raw request target, not decoded
    status: int
    content_type: str
    user_agent: str


class FixtureServer(LocalHTTPServer):
    """Serves the fixture folder on 127.0.0.1 and records every request under the label
    of whatever runs now; Chromium runs one at a time, so a label attributes requests."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.run = "idle"
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._connections: dict[Any, str] = {}  # open socket -> label when accepted
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="browsercheck-server", daemon=True
        )
        thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def record(self, method: str, target: str, status: int, ctype: str, agent: str) -> None:
        with self._lock:
            self.requests.append(Request(self.run, method, target, status, ctype, agent))

    def requests_of(self, run: str) -> list[Request]:
        with self._lock:
            return [request for request in self.requests if request.run == run]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections[request] = self.run
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._lock:
                self._connections.pop(request, None)

    def wait_idle(self, run: str, timeout: float = IDLE_TIMEOUT) -> bool:
        """Wait until the connections accepted during ``run`` are served and closed, so
        that none of its requests is recorded under the next run's label. (Our own
        walk's keep-alive connections may stay open: they belong to another label.)"""
        time.sleep(0.1)  # past the accept loop's poll interval
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if run not in self._connections.values():
                    return True
            time.sleep(0.02)
        return False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing connections at exit is normal; stay quiet about it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def lookup(self, target: str) -> tuple[int, bytes, str]:
        """(status, body, content type) for a raw request target; ``//`` stays distinct."""
        path = target.split("#", 1)[0].split("?", 1)[0]
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return 404, b"not found\n", "text/plain"
        file = site_file(self.root, decoded)
        if file is None or not file.is_file():
            return 404, b"not found\n", "text/plain"
        ctype = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        return 200, file.read_bytes(), ctype


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True
    server: FixtureServer

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, *, with_body: bool) -> None:
        status, body, ctype = self.server.lookup(self.path)
        agent = self.headers.get("User-Agent", "")
        self.server.record(self.command, self.path, status, ctype, agent)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """The server's request list replaces the stderr lines."""


# ---------------------------------------------------------------- found: our own code


def walk(start: str, max_pages: int = MAX_PAGES, max_depth: int = MAX_DEPTH) -> list[PageResult]:
    """Breadth-first over the start page's host with the harvester's own page code."""
    config = load_config(None, {}, {"allow_private": True})
    sheets = StylesheetCache(config.crawl, None)
    host = host_of(start)
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    seen = {start}
    pages: list[PageResult] = []
    while queue and len(pages) < max_pages:
        url, depth = queue.popleft()
        page = fetch_page(url, depth, config.crawl, None, sheets)
        pages.append(page)
        if page.error or page.is_image or depth >= max_depth:
            continue
        for link in page.links:
            if host_of(link) == host and link not in seen:
                seen.add(link)
                queue.append((link, depth + 1))
    return pages


def html_pages(pages: Iterable[PageResult]) -> list[PageResult]:
    return [page for page in pages if page.error is None and not page.is_image]


# ---------------------------------------------------------------- loaded: Chromium


@dataclass
class BrowserRun:
    page: str
    viewport: str
    seconds: float
    error: str | None = None
    images: list[str] = field(default_factory=list)  # normalized, answered 200 image/*
    documents: list[str] = field(default_factory=list)  # the page and its frames


def chromium_version(binary: str) -> str:
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip()


def chromium_command(binary: str, url: str, viewport: Viewport, profile: str) -> list[str]:
    return [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={viewport.width},{viewport.height}",
        f"--force-device-scale-factor={viewport.scale:g}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        "--dump-dom",
        url,
    ]


def run_chromium(binary: str, url: str, viewport: Viewport) -> tuple[str, str | None]:
    """(DOM after scripts ran, error) for one page load in a fresh profile.

    Chromium runs in its own session so that a hung run can be ended with all its
    helper processes, and only those.
    """
    with tempfile.TemporaryDirectory(
        prefix="browsercheck-profile-", ignore_cleanup_errors=True
    ) as profile:
        process = subprocess.Popen(
            chromium_command(binary, url, viewport, profile),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        error = None
        try:
            out, _ = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            error = f"timed out after {RUN_TIMEOUT:g} s"
            _kill_session(process.pid)
            out, _ = process.communicate()
        _kill_session(process.pid)  # helpers outliving the browser, if any
        if error is None and process.returncode != 0:
            error = f"exit status {process.returncode}"
    return out.decode("utf-8", errors="replace"), error


def _kill_session(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def browse(
    server: FixtureServer,
    binary: str,
    pages: Sequence[str],
    viewports: Sequence[Viewport] = VIEWPORTS,
    dom_dir: Path | None = None,
) -> list[BrowserRun]:
    """Render every page at every viewport, one Chromium at a time, and attribute the
    server's responses to the run that caused them."""
    runs = []
    for page in pages:
        for viewport in viewports:
            label = f"{page} {viewport.label}"
            server.run = label
            started = time.monotonic()
            dom, error = run_chromium(binary, page, viewport)
            if not server.wait_idle(label):
                error = error or "the server was still busy after the run"
            server.run = "idle"
            run = BrowserRun(page, viewport.label, round(time.monotonic() - started, 2), error)
            _attribute(run, server.requests_of(label), server.origin)
            runs.append(run)
            if dom_dir is not None:
                _save_dom(dom_dir, page, viewport, dom)
    return runs


def _attribute(run: BrowserRun, requests_seen: Iterable[Request], origin: str) -> None:
    for request in requests_seen:
        url = normalize(origin + request.target)
        if request.status != 200 or url is None:
            continue
        if request.content_type.startswith("image/") and url not in run.images:
            run.images.append(url)
        elif request.content_type == "text/html" and url not in run.documents:
            run.documents.append(url)


def _save_dom(dom_dir: Path, page: str, viewport: Viewport, dom: str) -> None:
    name = page.split("//", 1)[-1].split("/", 1)[-1].replace("/", "_") or "index"
    dom_dir.mkdir(parents=True, exist_ok=True)
    (dom_dir / f"{name}@{viewport.label}.html").write_text(dom, encoding="utf-8")


# ---------------------------------------------------------------- real: fetch each once


def image_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why a response is not a real image, or None when it is one."""
    if status != 200:
        return f"HTTP {status}"
    mime = content_type.split(";")[0].strip().lower()
    if mime == "image/svg+xml":
        return None if _is_svg(body) else "served as SVG but is not SVG XML"
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except Exception as exc:  # Pillow raises many kinds on junk
        return f"not decodable ({mime or 'no type'}: {type(exc).__name__})"
    return None


def _is_svg(body: bytes) -> bool:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return False
    return etree.QName(root).localname == "svg"


def check_real(urls: Iterable[str], host: str) -> dict[str, str | None]:
    """url -> None when it is a real image, else why not; only ``host`` is contacted."""
    problems: dict[str, str | None] = {}
    with requests.Session() as session:
        session.trust_env = False
        for url in sorted(set(urls)):
            if host_of(url) != host:
                problems[url] = "another host: not fetched"
                continue
            try:
                response = session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
            except requests.RequestException as exc:
                problems[url] = f"fetch failed: {type(exc).__name__}"
                continue
            ctype = response.headers.get("Content-Type", "")
            problems[url] = image_problem(response.status_code, ctype, response.content)
    return problems


# ---------------------------------------------------------------- scoring


@dataclass
class Score:
    loaded: int
    found: int
    hit: int
    recall: float
    precision: float
    precision_raw: float
    shown: float


def score(
    loaded: set[str], found: Mapping[str, str], real: Mapping[str, str | None], broken: set[str]
) -> Score:
    """The three ratios; an empty denominator counts as perfect (nothing to miss)."""
    hit = loaded & found.keys()
    real_found = [url for url in found if real.get(url, "not checked") is None]
    judged = [url for url in found if url not in broken]
    return Score(
        loaded=len(loaded),
        found=len(found),
        hit=len(hit),
        recall=_ratio(len(hit), len(loaded)),
        precision=_ratio(len([url for url in real_found if url not in broken]), len(judged)),
        precision_raw=_ratio(len(real_found), len(found)),
        shown=_ratio(len(hit), len(found)),
    )


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


@dataclass
class PageRow:
    page: str
    documents: list[str]  # what Chromium loaded for it: the page and its frames
    score: Score
    missed: list[str]


@dataclass
class ProbeResult:
    name: str
    why: str
    markup: str
    expected: list[str]
    loaded: list[str]  # of the expected URLs, those Chromium loaded
    found: list[str]  # of the expected URLs, those our code found


@dataclass
class Report:
    origin: str
    chromium: str
    viewports: list[str]
    pages: list[PageRow]
    total: Score
    missed: list[dict[str, Any]]  # loaded by Chromium, not found
    not_real: list[dict[str, Any]]  # found, not a real image
    not_loaded: list[dict[str, Any]]  # found, real, loaded by no run
    violations: list[str]  # failed fixture expectations
    loaded_urls: list[str]
    found_urls: dict[str, str]  # url -> kind
    real: dict[str, str | None]  # url -> None when real, else why not
    runs: list[BrowserRun]
    walked: list[dict[str, Any]]
    probes: list[ProbeResult] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def build_report(
    site: Site,
    origin: str,
    chromium: str,
    walked: list[PageResult],
    runs: list[BrowserRun],
    real: Mapping[str, str | None],
    viewports: Sequence[Viewport] = VIEWPORTS,
) -> Report:
    pages = html_pages(walked)
    found_on = {_page_url(page): {ref.url: ref.kind for ref in page.images} for page in pages}
    found: dict[str, str] = {}
    for images in found_on.values():
        for url, kind in images.items():
            found.setdefault(url, kind)
    host = host_of(origin + "/")
    loaded = {url for run in runs for url in run.images if host_of(url) == host}
    broken = {_url(origin, image.path) for image in site.images if image.broken}
    rows = [_page_row(page, runs, found_on, real, broken, host) for page in found_on]
    return Report(
        origin=origin,
        chromium=chromium,
        viewports=[viewport.label for viewport in viewports],
        pages=rows,
        total=score(loaded, found, real, broken),
        missed=[
            {"url": url, "loaded_by": [f"{r.page} {r.viewport}" for r in runs if url in r.images]}
            for url in sorted(loaded - found.keys())
        ],
        not_real=[
            {"url": url, "kind": found[url], "why": real.get(url, "not checked")}
            for url in sorted(found)
            if real.get(url, "not checked") is not None
        ],
        not_loaded=[
            {"url": url, "kind": found[url]}
            for url in sorted(found.keys() - loaded)
            if real.get(url, "not checked") is None
        ],
        violations=check_expectations(site, origin, walked, runs, found, real),
        loaded_urls=sorted(loaded),
        found_urls=dict(sorted(found.items())),
        real=dict(sorted(real.items())),
        runs=runs,
        walked=[
            {"url": page.url, "status": page.status, "error": page.error, "links": page.links}
            for page in walked
        ],
    )


def _page_url(page: PageResult) -> str:
    return page.final_url or page.url


def _url(origin: str, path: str) -> str:
    url = normalize(origin + path)
    if url is None:
        raise ValueError(f"fixture path does not make a URL: {path!r}")
    return url


def _page_row(
    page: str,
    runs: list[BrowserRun],
    found_on: Mapping[str, Mapping[str, str]],
    real: Mapping[str, str | None],
    broken: set[str],
    host: str,
) -> PageRow:
    """One page's figures: what its runs loaded against what we found on it and on the
    frames those runs loaded (frames are pages of their own for the crawler)."""
    own = [run for run in runs if run.page == page]
    loaded = {url for run in own for url in run.images if host_of(url) == host}
    documents = sorted({doc for run in own for doc in run.documents} | {page})
    found: dict[str, str] = {}
    for document in documents:
        for url, kind in found_on.get(document, {}).items():
            found.setdefault(url, kind)
    return PageRow(
        page, documents, score(loaded, found, real, broken), sorted(loaded - found.keys())
    )


def check_expectations(
    site: Site,
    origin: str,
    walked: list[PageResult],
    runs: list[BrowserRun],
    found: Mapping[str, str],
    real: Mapping[str, str | None],
) -> list[str]:
    """Every way the run differs from what the fixture says should happen."""
    loaded = {url for run in runs for url in run.images}
    problems = [f"Chromium run {run.page} {run.viewport}: {run.error}" for run in runs if run.error]
    for image in site.images:
        problems += _image_expectations(image, _url(origin, image.path), loaded, found, real)
    declared = {_url(origin, image.path) for image in site.images}
    problems += [f"Chromium loaded an undeclared file: {url}" for url in sorted(loaded - declared)]
    visited = {_page_url(page) for page in html_pages(walked)}
    documents = {doc for run in runs for doc in run.documents}
    for fixture_page in site.pages:
        url = _url(origin, fixture_page.path)
        if fixture_page.via == "link" and url not in visited:
            problems.append(f"the walk did not reach linked page {fixture_page.path}")
        if fixture_page.via != "link" and url not in documents:
            problems.append(f"Chromium did not load the {fixture_page.via} {fixture_page.path}")
    pages = {_url(origin, page.path) for page in site.pages}
    problems += [f"a page reported as an image: {url}" for url in sorted(pages & found.keys())]
    return problems


def _image_expectations(
    image: FixtureImage,
    url: str,
    loaded: set[str],
    found: Mapping[str, str],
    real: Mapping[str, str | None],
) -> list[str]:
    what = f"{image.path} ({image.why})" if image.why else image.path
    problems = []
    if image.loaded is True and url not in loaded:
        problems.append(f"Chromium should load {what} at some viewport, none did")
    if image.loaded is False and url in loaded:
        problems.append(f"Chromium loaded {what}, which it should not")
    if image.found is True and url not in found:
        problems.append(f"extraction should report {what}")
    if image.found is False and url in found:
        problems.append(f"extraction reported the trap {what}")
    is_real = real.get(url, "not checked") is None
    if is_real != image.real:
        why = real.get(url, "not checked")
        problems.append(f"{what} should {'' if image.real else 'not '}be a real image ({why})")
    return problems


# ---------------------------------------------------------------- running it


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_check(
    chromium: str,
    keep: Path | None = None,
    viewports: Sequence[Viewport] = VIEWPORTS,
) -> Report:
    """Serve the fixture site, walk it with our code, render it with Chromium, score."""
    from tests.browser_site.site import build_site

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="browsercheck-") as scratch:
        work = keep if keep is not None else Path(scratch)
        site_root = work / "site"
        if site_root.exists():
            shutil.rmtree(site_root)
        site_root.mkdir(parents=True)
        server = FixtureServer(site_root)
        server.start()
        try:
            site = build_site(server.origin)
            write_site(site, site_root)
            report = _measure(server, site, chromium, viewports, keep)
        finally:
            server.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _measure(
    server: FixtureServer,
    site: Site,
    chromium: str,
    viewports: Sequence[Viewport],
    keep: Path | None,
) -> Report:
    server.run = "walk"
    walked = walk(server.origin + site.start)
    pages = [_page_url(page) for page in html_pages(walked)]
    runs = browse(server, chromium, pages, viewports, keep / "dom" if keep else None)
    found = {ref.url for page in html_pages(walked) for ref in page.images}
    fixture_urls = {_url(server.origin, image.path) for image in site.images}
    server.run = "real"
    real = check_real(found | fixture_urls, host_of(server.origin + "/"))
    server.run = "idle"
    version = chromium_version(chromium)
    report = build_report(site, server.origin, version, walked, runs, real, viewports)
    report.probes = measure_probes(server, site, chromium)
    return report


def measure_probes(server: FixtureServer, site: Site, chromium: str) -> list[ProbeResult]:
    """One fetch and one Chromium run of the probe page: per probe, what was loaded
    and what was found of the URLs it names."""
    if not site.probes:
        return []
    url = server.origin + site.probe_page
    config = load_config(None, {}, {"allow_private": True})
    server.run = "walk probes"
    page = fetch_page(url, 0, config.crawl, None, StylesheetCache(config.crawl, None))
    found = {ref.url for ref in page.images}
    run = browse(server, chromium, [url], [PROBE_VIEWPORT])[0]
    results = []
    for probe in site.probes:
        expected = [_url(server.origin, path) for path in probe.images]
        results.append(
            ProbeResult(
                probe.name,
                probe.why,
                probe.markup,
                expected,
                [u for u in expected if u in run.images],
                [u for u in expected if u in found],
            )
        )
    return results


# ---------------------------------------------------------------- output


def format_report(report: Report) -> str:
    origin = report.origin
    short = len(origin)
    lines = [
        f"browser check: {report.chromium}, viewports {', '.join(report.viewports)}",
        f"{'page':<26}{'loaded':>7}{'found':>7}{'hit':>6}{'recall':>9}"
        f"{'precision':>11}{'shown':>8}",
    ]
    for row in report.pages:
        lines.append(_score_line(row.page[short:], row.score))
    lines.append(_score_line("total", report.total))
    if report.total.precision != report.total.precision_raw:
        lines.append(
            f"(precision leaves out references that 404 on purpose; "
            f"with them: {report.total.precision_raw:.1%})"
        )
    lines += _section("missed: loaded by Chromium, not found", report.missed, origin)
    lines += _section("found, not a real image", report.not_real, origin)
    lines += _section("found, loaded by no viewport (real images)", report.not_loaded, origin)
    lines.append(f"expectations: {'all met' if not report.violations else 'FAILED'}")
    lines += [f"  {problem}" for problem in report.violations]
    lines += _probe_lines(report.probes)
    slowest = max((run.seconds for run in report.runs), default=0.0)
    lines.append(
        f"{len(report.runs)} Chromium runs (slowest {slowest:.1f} s), {report.seconds:.1f} s in all"
    )
    return "\n".join(lines)


def _probe_lines(probes: list[ProbeResult]) -> list[str]:
    missed = [probe for probe in probes if len(probe.found) < len(probe.expected)]
    lines = [f"probes (unlinked page, not in the figures): {len(missed)} of {len(probes)} missed"]
    for probe in probes:
        lines.append(
            f"  {probe.name}: loaded {len(probe.loaded)}/{len(probe.expected)}, "
            f"found {len(probe.found)}/{len(probe.expected)}  {probe.markup}"
        )
    return lines


def _score_line(name: str, s: Score) -> str:
    return (
        f"{name:<26}{s.loaded:>7}{s.found:>7}{s.hit:>6}{s.recall:>9.1%}"
        f"{s.precision:>11.1%}{s.shown:>8.1%}"
    )


def _section(title: str, items: list[dict[str, Any]], origin: str) -> list[str]:
    lines = [f"{title}: {len(items)}"]
    for item in items:
        extra = "; ".join(
            f"{key} {', '.join(value) if isinstance(value, list) else value}"
            for key, value in item.items()
            if key != "url"
        )
        lines.append(f"  {item['url'].removeprefix(origin)}  [{extra.replace(origin, '')}]")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser_site.check", description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the site and DOM dumps in this folder")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("chromium not found: install it (apt-get install chromium)", file=sys.stderr)
        return 2
    report = run_check(chromium, keep=args.keep)
    print(format_report(report))
    if args.json:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    perfect = report.total.recall == 1.0 and report.total.precision == 1.0
    return 0 if perfect and not report.violations else 1


if __name__ == "__main__":
    sys.exit(main())
