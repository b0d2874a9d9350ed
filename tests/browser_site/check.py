"""Recall and precision of our image extraction against what headless Chromium loads.

The issue's target: at least 99.5% of the same-origin images a browser loads are found,
and at least 99% of what we report are real images. A browser is the only honest
reference for "what a page shows", so this serves a fixture site (tests/browser_site/,
every markup kind and trap) on 127.0.0.1 and compares:

* found: what our own code reports, walking the site breadth-first with
  ``crawler.web.pages.fetch_page`` (style sheets included) from the fixture's index page,
  once per render mode (``--render`` of the crawler): ``never`` (no render stage),
  ``auto`` (the pages whose scripts look like they build images or links) and
  ``always`` (every page), rendered by ``crawler.render.chromium.ChromiumRenderer``;
* loaded: the image responses (200, ``image/*``) the server sent while headless
  Chromium rendered each visited page, one run at a time, at several viewports and
  pixel densities, so that every srcset candidate or ``<picture>`` branch some real
  device would pick gets loaded;
* real: every found URL fetched once; 200 and decodable by Pillow (SVG: served as
  ``image/svg+xml`` and parses as XML with an ``<svg>`` root).

recall = |found & loaded| / |loaded|, precision = |found & real| / |found| (references the
fixture declares broken on purpose, a 404 favicon, are left out: they are reported as
broken, not as images; ``precision_raw`` keeps them), shown = |found & loaded| / |found|.
Per mode, the same figures are also given for the script-made images alone (those the
fixture marks ``needs_render``: only a render of a page finds them) and for the others.
The Chromium reference is one for all modes: every page any mode reached, and the pages
only script-made links lead to, whichever modes run.

The fixture also says, per image, what Chromium must and must not load and what we must
and must not report (per mode: a script-made image is found exactly when the mode
rendered the page that makes it), and which pages ``auto`` must and must not render;
every failed expectation is listed, so a harness bug shows up.

Usage:
    python -m tests.browser_site.check [--render never|auto|always|all] [--json FILE]
        [--keep DIR] [--chromium PATH]
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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests
from lxml import etree
from PIL import Image

from crawler.config import CrawlConfig, RenderConfig, load_config
from crawler.demo.server import LocalHTTPServer
from crawler.render.base import RENDER_MODES, Renderer
from crawler.render.chromium import QUIET_FLAGS
from crawler.render.stage import RenderStage
from crawler.urls import host_of, normalize
from crawler.web.pages import PageResult, StylesheetCache, fetch_page, fetch_resource

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
    ".json": "application/json",
}
CHROMIUM_FLAGS = (
    "--headless",
    *QUIET_FLAGS,  # the renderer's: as root, and no calls home on a closed network
    "--no-proxy-server",  # only 127.0.0.1, whatever the environment says
)
VIRTUAL_TIME_MS = 2500
RUN_TIMEOUT = 30.0  # seconds of real time for one Chromium run
IDLE_TIMEOUT = 3.0  # seconds to wait for the server to finish a run's last requests
FETCH_TIMEOUT = 10.0
MAX_PAGES = 50
MAX_DEPTH = 4
# The render stage's settings for the auto and always walks: two pages at once (and two
# page fetches at once in those walks), each within ten seconds.
RENDER_CONCURRENCY = 2
RENDER_TIMEOUT = 10.0


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
# The script pages show nothing that depends on the viewport: one run each, tall enough
# that what nears the viewport (the lazy loader's test) is in it without scrolling.
SCRIPT_VIEWPORT = VIEWPORTS[1]


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
    # The page (URL path) whose scripts make it, or make the link to the page it is on:
    # ``found`` holds when a mode renders that page; otherwise it must not be found.
    needs_render: str | None = None


@dataclass(frozen=True)
class FixturePage:
    path: str
    via: str  # how it is reached: "link", "iframe", "frame", or "script" (a link only
    # the scripts of ``needs_render`` make)
    needs_render: str | None = None
    auto: bool | None = None  # --render auto must (True) or must not (False) render it
    one_viewport: bool = False  # Chromium sees it at SCRIPT_VIEWPORT only


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


def walk(
    start: str,
    mode: str = "never",
    *,
    renderer: Renderer | None = None,
    workers: int = 1,
    chromium: str = "",
    max_pages: int = MAX_PAGES,
    max_depth: int = MAX_DEPTH,
) -> list[PageResult]:
    """Breadth-first over the start page's host with the harvester's own page code.

    ``mode`` is the crawler's ``--render``: ``never`` passes no render stage (the page
    path as it was before there was one); ``auto`` and ``always`` a ``RenderStage`` of
    their own on ``renderer`` (default: a ``ChromiumRenderer`` of the ``chromium``
    binary, made here and closed at the end). ``workers`` pages of one depth are
    fetched at once; the pages come back in the order of a walk one page at a time."""
    if mode not in RENDER_MODES:
        raise ValueError(f"render mode must be one of {', '.join(RENDER_MODES)}: {mode!r}")
    config = load_config(None, {}, {"allow_private": True})
    sheets = StylesheetCache(config.crawl, None)
    own = None
    stage = None
    if mode != "never":
        if renderer is None:
            renderer = own = make_renderer(config.crawl, chromium)
        stage = RenderStage(mode, renderer, config.crawl.user_agent)

    def fetch(url: str, depth: int) -> PageResult:
        return fetch_page(url, depth, config.crawl, None, sheets, render=stage)

    host = host_of(start)
    level, depth = [start], 0
    seen = {start}
    pages: list[PageResult] = []
    try:
        with ThreadPoolExecutor(max(1, workers), "browsercheck-walk") as pool:
            while level and len(pages) < max_pages:
                level = level[: max_pages - len(pages)]
                done = list(pool.map(fetch, level, [depth] * len(level)))
                pages += done
                following = []
                for page in done if depth < max_depth else []:
                    if page.error or page.is_image:
                        continue
                    for link in page.links:
                        if host_of(link) == host and link not in seen:
                            seen.add(link)
                            following.append(link)
                level, depth = following, depth + 1
    finally:
        if own is not None:
            own.close()
    return pages


def make_renderer(
    crawl: CrawlConfig, chromium: str = "", concurrency: int = RENDER_CONCURRENCY
) -> Renderer:
    """The crawler's Chromium renderer, fetching what pages ask for as the crawl does."""
    from crawler.render.chromium import ChromiumRenderer

    settings = RenderConfig(
        render_concurrency=concurrency, render_timeout=RENDER_TIMEOUT, chromium=chromium
    )
    return ChromiumRenderer(settings, lambda url, referer: fetch_resource(url, crawl, referer))


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
    only_at: Mapping[str, Sequence[Viewport]] | None = None,
) -> list[BrowserRun]:
    """Render every page at every viewport (those ``only_at`` names, for its pages), one
    Chromium at a time, and attribute the server's responses to the run that caused
    them."""
    runs = []
    for page in pages:
        for viewport in (only_at or {}).get(page, viewports):
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
class ModeReport:
    """The figures of one render mode's walk against the shared Chromium reference."""

    mode: str
    pages: list[PageRow]
    total: Score
    script: Score  # the script-made images alone (the fixture's needs_render)
    other: Score  # every other image
    missed: list[dict[str, Any]]  # loaded by Chromium, not found
    not_real: list[dict[str, Any]]  # found, not a real image
    not_loaded: list[dict[str, Any]]  # found, real, loaded by no run
    violations: list[str]  # failed fixture expectations of this mode's walk
    found_urls: dict[str, str]  # url -> kind
    pages_reached: int
    rendered_pages: list[str]
    render_errors: dict[str, str]  # page -> why its render did not finish
    render_seconds: float  # the renders' own seconds, summed
    walk_seconds: float
    walked: list[dict[str, Any]]

    @property
    def pages_rendered(self) -> int:
        return len(self.rendered_pages)

    @property
    def render_seconds_per_page(self) -> float | None:
        return self.render_seconds / len(self.rendered_pages) if self.rendered_pages else None

    @property
    def meets_targets(self) -> bool:
        """100% recall and precision: ``never`` on the images a static parser can see,
        a rendering mode on all of them."""
        figures = self.other if self.mode == "never" else self.total
        return figures.recall == 1.0 and figures.precision == 1.0


@dataclass
class Report:
    origin: str
    chromium: str
    viewports: list[str]
    modes: dict[str, ModeReport]  # by render mode, in RENDER_MODES order
    violations: list[str]  # failed expectations of the site and the Chromium reference
    loaded_urls: list[str]
    script_urls: list[str]  # the script-made images (needs_render)
    real: dict[str, str | None]  # url -> None when real, else why not
    runs: list[BrowserRun]
    probes: list[ProbeResult] = field(default_factory=list)
    seconds: float = 0.0

    def mode(self, name: str) -> ModeReport:
        return self.modes[name]

    @property
    def all_violations(self) -> list[str]:
        """Every failed expectation, those of a mode's walk prefixed with the mode."""
        return self.violations + [
            f"{name}: {problem}" for name, mode in self.modes.items() for problem in mode.violations
        ]

    def to_json(self) -> str:
        data = asdict(self)
        for name, mode in self.modes.items():
            data["modes"][name].update(
                pages_rendered=mode.pages_rendered,
                render_seconds_per_page=mode.render_seconds_per_page,
                meets_targets=mode.meets_targets,
            )
        return json.dumps(data, indent=2, ensure_ascii=False)


def build_report(
    site: Site,
    origin: str,
    chromium: str,
    walks: Mapping[str, list[PageResult]],
    runs: list[BrowserRun],
    real: Mapping[str, str | None],
    viewports: Sequence[Viewport] = VIEWPORTS,
    walk_seconds: Mapping[str, float] | None = None,
) -> Report:
    host = host_of(origin + "/")
    loaded = {url for run in runs for url in run.images if host_of(url) == host}
    broken = {_url(origin, image.path) for image in site.images if image.broken}
    script = {_url(origin, image.path) for image in site.images if image.needs_render}
    modes = {
        mode: _mode_report(site, origin, mode, walked, runs, loaded, script, real, broken, host)
        for mode, walked in walks.items()
    }
    for mode, seconds in (walk_seconds or {}).items():
        modes[mode].walk_seconds = round(seconds, 2)
    return Report(
        origin=origin,
        chromium=chromium,
        viewports=[viewport.label for viewport in viewports],
        modes=modes,
        violations=reference_problems(site, origin, runs, real),
        loaded_urls=sorted(loaded),
        script_urls=sorted(script),
        real=dict(sorted(real.items())),
        runs=runs,
    )


def _mode_report(
    site: Site,
    origin: str,
    mode: str,
    walked: list[PageResult],
    runs: list[BrowserRun],
    loaded: set[str],
    script: set[str],
    real: Mapping[str, str | None],
    broken: set[str],
    host: str,
) -> ModeReport:
    pages = html_pages(walked)
    found_on = {_page_url(page): {ref.url: ref.kind for ref in page.images} for page in pages}
    found: dict[str, str] = {}
    for images in found_on.values():
        for url, kind in images.items():
            found.setdefault(url, kind)
    rows = [_page_row(page, runs, found_on, real, broken, host) for page in found_on]
    rendered = [page for page in pages if page.rendered]
    return ModeReport(
        mode=mode,
        pages=rows,
        total=score(loaded, found, real, broken),
        script=score(loaded & script, _only(found, script), real, broken),
        other=score(loaded - script, _only(found, found.keys() - script), real, broken),
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
        violations=mode_problems(site, origin, mode, walked, found),
        found_urls=dict(sorted(found.items())),
        pages_reached=len(pages),
        rendered_pages=[_page_url(page) for page in rendered],
        render_errors={_page_url(p): p.render_error for p in rendered if p.render_error},
        render_seconds=round(sum(page.render_seconds or 0.0 for page in rendered), 2),
        walk_seconds=0.0,
        walked=[
            {
                "url": page.url,
                "status": page.status,
                "error": page.error,
                "links": page.links,
                "script_hints": list(page.script_hints),
                "rendered": page.rendered,
                "rendered_images": page.rendered_images,
                "rendered_links": page.rendered_links,
                "render_error": page.render_error,
                "render_seconds": page.render_seconds,
            }
            for page in walked
        ],
    )


def _only(found: Mapping[str, str], urls: Iterable[str]) -> dict[str, str]:
    keep = set(urls)
    return {url: kind for url, kind in found.items() if url in keep}


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


def reference_problems(
    site: Site, origin: str, runs: list[BrowserRun], real: Mapping[str, str | None]
) -> list[str]:
    """Every way the Chromium reference and the served files differ from what the
    fixture says, whatever the render mode."""
    loaded = {url for run in runs for url in run.images}
    problems = [f"Chromium run {run.page} {run.viewport}: {run.error}" for run in runs if run.error]
    for image in site.images:
        problems += _loaded_expectations(image, _url(origin, image.path), loaded, real)
    declared = {_url(origin, image.path) for image in site.images}
    problems += [f"Chromium loaded an undeclared file: {url}" for url in sorted(loaded - declared)]
    documents = {doc for run in runs for doc in run.documents}
    for fixture_page in site.pages:
        url = _url(origin, fixture_page.path)
        if fixture_page.via in ("iframe", "frame") and url not in documents:
            problems.append(f"Chromium did not load the {fixture_page.via} {fixture_page.path}")
    return problems


def mode_problems(
    site: Site, origin: str, mode: str, walked: list[PageResult], found: Mapping[str, str]
) -> list[str]:
    """Every way one mode's walk differs from what the fixture says should happen."""
    pages = html_pages(walked)
    visited = {_page_url(page) for page in pages}
    rendered = {_page_url(page) for page in pages if page.rendered}
    problems = []
    for image in site.images:
        expect = image.found
        if image.needs_render is not None and _url(origin, image.needs_render) not in rendered:
            expect = False  # what a static parse cannot see must not be reported
        problems += _found_expectations(image, _url(origin, image.path), expect, found)
    declared = {_url(origin, image.path) for image in site.images}
    problems += [f"reported an undeclared URL: {url}" for url in sorted(found.keys() - declared)]
    for fixture_page in site.pages:
        url = _url(origin, fixture_page.path)
        if fixture_page.via == "link" and url not in visited:
            problems.append(f"the walk did not reach linked page {fixture_page.path}")
        if fixture_page.via == "script":
            assert fixture_page.needs_render is not None
            linked_by = _url(origin, fixture_page.needs_render)
            if linked_by in rendered and url not in visited:
                problems.append(
                    f"the walk did not reach {fixture_page.path}, linked by the rendered "
                    f"{fixture_page.needs_render}"
                )
            if linked_by not in rendered and url in visited:
                problems.append(
                    f"the walk reached {fixture_page.path}, which only the scripts of the "
                    f"unrendered {fixture_page.needs_render} link to"
                )
        if mode == "auto" and fixture_page.auto is not None and url in visited:
            if fixture_page.auto and url not in rendered:
                problems.append(f"auto did not render {fixture_page.path}")
            if not fixture_page.auto and url in rendered:
                problems.append(f"auto rendered {fixture_page.path}, whose scripts build nothing")
    if mode == "always":
        problems += [f"always did not render {url}" for url in sorted(visited - rendered)]
    if mode == "never" and rendered:
        problems += [f"never rendered {url}" for url in sorted(rendered)]
    problems += [
        f"render of {_page_url(page)}: {page.render_error}" for page in pages if page.render_error
    ]
    page_urls = {_url(origin, page.path) for page in site.pages}
    problems += [f"a page reported as an image: {url}" for url in sorted(page_urls & found.keys())]
    return problems


def _what(image: FixtureImage) -> str:
    return f"{image.path} ({image.why})" if image.why else image.path


def _loaded_expectations(
    image: FixtureImage, url: str, loaded: set[str], real: Mapping[str, str | None]
) -> list[str]:
    what = _what(image)
    problems = []
    if image.loaded is True and url not in loaded:
        problems.append(f"Chromium should load {what} at some viewport, none did")
    if image.loaded is False and url in loaded:
        problems.append(f"Chromium loaded {what}, which it should not")
    is_real = real.get(url, "not checked") is None
    if is_real != image.real:
        why = real.get(url, "not checked")
        problems.append(f"{what} should {'' if image.real else 'not '}be a real image ({why})")
    return problems


def _found_expectations(
    image: FixtureImage, url: str, expect: bool | None, found: Mapping[str, str]
) -> list[str]:
    what = _what(image)
    if expect is True and url not in found:
        return [f"extraction should report {what}"]
    if expect is False and url in found:
        trap = "the trap" if image.needs_render is None else "unrendered"
        return [f"extraction reported {trap} {what}"]
    return []


# ---------------------------------------------------------------- running it


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_check(
    chromium: str,
    keep: Path | None = None,
    viewports: Sequence[Viewport] = VIEWPORTS,
    modes: Sequence[str] = RENDER_MODES,
    render_concurrency: int = RENDER_CONCURRENCY,
) -> Report:
    """Serve the fixture site, walk it with our code once per render mode (``modes``),
    render it with Chromium, score."""
    from tests.browser_site.site import build_site

    unknown = [mode for mode in modes if mode not in RENDER_MODES]
    if unknown or not modes:
        raise ValueError(f"render modes must be among {', '.join(RENDER_MODES)}: {unknown}")
    modes = [mode for mode in RENDER_MODES if mode in modes]

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
            report = _measure(server, site, chromium, viewports, keep, modes, render_concurrency)
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
    modes: Sequence[str],
    render_concurrency: int,
) -> Report:
    walks: dict[str, list[PageResult]] = {}
    seconds: dict[str, float] = {}
    renderer = None
    try:
        for mode in modes:
            if mode != "never" and renderer is None:
                config = load_config(None, {}, {"allow_private": True})
                renderer = make_renderer(config.crawl, chromium, render_concurrency)
            server.run = f"walk {mode}"  # the renderer's fetches are the walk's own
            started = time.monotonic()
            walks[mode] = walk(
                server.origin + site.start,
                mode,
                renderer=renderer,
                workers=1 if mode == "never" else render_concurrency,
            )
            seconds[mode] = time.monotonic() - started
    finally:
        server.run = "idle"
        if renderer is not None:
            renderer.close()
    # One reference for every mode: the pages any mode reached, and those only
    # script-made links lead to (so that --render never alone is judged against it too).
    pages: dict[str, None] = {}
    for walked in walks.values():
        pages.update(dict.fromkeys(_page_url(page) for page in html_pages(walked)))
    only_at: dict[str, Sequence[Viewport]] = {}
    for fixture_page in site.pages:
        url = _url(server.origin, fixture_page.path)
        if fixture_page.via == "script":
            pages.setdefault(url)
        if fixture_page.one_viewport:
            only_at[url] = [SCRIPT_VIEWPORT]
    dom_dir = keep / "dom" if keep else None
    runs = browse(server, chromium, list(pages), viewports, dom_dir, only_at)
    found = {
        ref.url for walked in walks.values() for page in html_pages(walked) for ref in page.images
    }
    fixture_urls = {_url(server.origin, image.path) for image in site.images}
    server.run = "real"
    real = check_real(found | fixture_urls, host_of(server.origin + "/"))
    server.run = "idle"
    version = chromium_version(chromium)
    report = build_report(site, server.origin, version, walks, runs, real, viewports, seconds)
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
    modes = list(report.modes.values())
    lines = [
        f"browser check: {report.chromium}, viewports {', '.join(report.viewports)}, "
        f"render modes {', '.join(report.modes)}",
        "",
    ]
    lines += _summary_lines(modes)
    lines.append("")
    lines += _page_lines(modes, len(origin))
    for mode in modes:
        if mode.total.precision != mode.total.precision_raw:
            lines.append(
                f"({mode.mode}: precision leaves out references that 404 on purpose; "
                f"with them: {mode.total.precision_raw:.1%})"
            )
    for title, attribute in (
        ("missed: loaded by Chromium, not found", "missed"),
        ("found, not a real image", "not_real"),
        ("found, loaded by no viewport (real images)", "not_loaded"),
    ):
        lists = {mode.mode: getattr(mode, attribute) for mode in modes}
        if len(modes) > 1 and all(items == lists[modes[0].mode] for items in lists.values()):
            lines += _section(f"{title} (every mode)", lists[modes[0].mode], origin)
        else:
            for name, items in lists.items():
                lines += _section(f"{title} ({name})", items, origin)
    violations = report.all_violations
    lines.append(f"expectations: {'all met' if not violations else 'FAILED'}")
    lines += [f"  {problem}" for problem in violations]
    lines += _probe_lines(report.probes)
    slowest = max((run.seconds for run in report.runs), default=0.0)
    lines.append(
        f"{len(report.runs)} Chromium runs (slowest {slowest:.1f} s), {report.seconds:.1f} s in all"
    )
    return "\n".join(lines)


def _summary_lines(modes: list[ModeReport]) -> list[str]:
    """The modes side by side."""

    def row(name: str, values: Iterable[str]) -> str:
        return f"{name:<34}" + "".join(f"{value:>10}" for value in values)

    def pct(value: float, whole: int = 1) -> str:
        return f"{value:.1%}" if whole else "-"

    per_page = [mode.render_seconds_per_page for mode in modes]
    return [
        row("render mode", (mode.mode for mode in modes)),
        row("recall", (pct(mode.total.recall) for mode in modes)),
        row("precision", (pct(mode.total.precision) for mode in modes)),
        row("shown", (pct(mode.total.shown) for mode in modes)),
        row(
            "recall, script-made images",
            (pct(mode.script.recall, mode.script.loaded) for mode in modes),
        ),
        row("  (found of loaded)", (f"{m.script.hit}/{m.script.loaded}" for m in modes)),
        row("recall, other images", (pct(mode.other.recall) for mode in modes)),
        row("precision, other images", (pct(mode.other.precision) for mode in modes)),
        row("images found", (str(mode.total.found) for mode in modes)),
        row("pages reached", (str(mode.pages_reached) for mode in modes)),
        row("pages rendered", (str(mode.pages_rendered) for mode in modes)),
        row("render seconds, total", (f"{mode.render_seconds:.1f}" for mode in modes)),
        row(
            "render seconds per rendered page", ("-" if s is None else f"{s:.2f}" for s in per_page)
        ),
        row("walk seconds", (f"{mode.walk_seconds:.1f}" for mode in modes)),
        row("targets", ("met" if mode.meets_targets else "MISSED" for mode in modes)),
    ]


def _page_lines(modes: list[ModeReport], short: int) -> list[str]:
    """Per page: what Chromium loaded, and per mode what was found of it (* rendered)."""
    header = f"{'page':<28}{'loaded':>7}"
    for mode in modes:
        header += f" |{mode.mode:>7}{'hit':>5}{'recall':>8} "
    lines = [header]
    loaded: dict[str, int] = {}
    order: dict[str, None] = {}
    for mode in modes:
        for row in mode.pages:
            loaded.setdefault(row.page, row.score.loaded)
            order.setdefault(row.page)
    for page in order:
        line = f"{page[short:]:<28}{loaded[page]:>7}"
        for mode in modes:
            row = next((r for r in mode.pages if r.page == page), None)
            mark = "*" if page in mode.rendered_pages else " "
            if row is None:
                line += f" |{'-':>7}{'-':>5}{'-':>8} "
            else:
                s = row.score
                line += f" |{s.found:>7}{s.hit:>5}{s.recall:>8.1%}{mark}"
        lines.append(line)
    total = f"{'total':<28}{modes[0].total.loaded:>7}"
    for mode in modes:
        s = mode.total
        total += f" |{s.found:>7}{s.hit:>5}{s.recall:>8.1%} "
    lines.append(total)
    lines.append("(* rendered; a page's row counts the frames Chromium loaded with it)")
    return lines


def _probe_lines(probes: list[ProbeResult]) -> list[str]:
    missed = [probe for probe in probes if len(probe.found) < len(probe.expected)]
    lines = [f"probes (unlinked page, not in the figures): {len(missed)} of {len(probes)} missed"]
    for probe in probes:
        lines.append(
            f"  {probe.name}: loaded {len(probe.loaded)}/{len(probe.expected)}, "
            f"found {len(probe.found)}/{len(probe.expected)}  {probe.markup}"
        )
    return lines


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
    parser.add_argument(
        "--render",
        choices=(*RENDER_MODES, "all"),
        default="all",
        help="the crawler's render mode to measure; all (default): every mode side by side",
    )
    parser.add_argument(
        "--render-concurrency",
        type=int,
        default=RENDER_CONCURRENCY,
        help=f"pages rendered at once by auto and always (default {RENDER_CONCURRENCY})",
    )
    args = parser.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("chromium not found: install it (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.render_concurrency < 1:
        parser.error("--render-concurrency must be at least 1")
    modes = RENDER_MODES if args.render == "all" else (args.render,)
    report = run_check(
        chromium, keep=args.keep, modes=modes, render_concurrency=args.render_concurrency
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    met = all(mode.meets_targets for mode in report.modes.values())
    return 0 if met and not report.all_violations else 1


if __name__ == "__main__":
    sys.exit(main())
