"""Fetch one HTML page and extract what it references (runs in the harvester's page threads).

Whatever a server sends, this returns a ``PageResult``, never raises: a hostile page
must not take the harvester down. A page whose host gave no answer, or whose
robots.txt could not be read, is ``retryable``: the harvester tries it again later.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from crawler.config import CrawlConfig
from crawler.errors import BadEncoding, UnsafeTarget
from crawler.render.stage import RenderStage
from crawler.urls import host_of, normalize, resolve
from crawler.web.css import import_urls, stylesheet_image_rules
from crawler.web.describe import PageDescription
from crawler.web.extract import ImageRef, PageContent, extract_page, match_page_selectors
from crawler.web.failures import describe_request_error
from crawler.web.optout import product_token, response_opt_out
from crawler.web.retries import is_no_answer
from crawler.web.robots import (
    DISALLOWED,
    ROBOTS_MAX_BYTES,
    UNREACHABLE,
    RobotsCache,
    RobotsFailure,
    RobotsResponse,
    robots_url,
)
from crawler.web.safehttp import (
    AddressPolicy,
    body_chunks,
    make_session,
    open_url,
    session_options,
)
from crawler.web.selectors import ImageRule, applied_rules, image_rule
from crawler.web.sitemaps import MAX_SITEMAP_BYTES, NotASitemap, SitemapContent, parse_sitemap
from crawler.web.tdmrep import MAX_TDMREP_BYTES
from crawler.web.verify import sniff_image_type

HTML_TYPES = ("text/html", "application/xhtml+xml")
PAGE_POOL_SIZE = 4


@dataclass
class PageResult:
    url: str
    depth: int
    final_url: str | None = None
    status: int | None = None
    content_type: str = ""
    error: str | None = None
    truncated: bool = False
    is_image: bool = False
    images: list[ImageRef] = field(default_factory=list)
    refused_images: list[ImageRef] = field(default_factory=list)  # robots.txt says no
    held_images: list[ImageRef] = field(default_factory=list)  # robots.txt unreadable yet
    links: list[str] = field(default_factory=list)
    nofollow_links: list[str] = field(default_factory=list)
    unreachable: bool = False  # the host gave no answer at all
    retryable: bool = False  # worth another try later (no answer, robots.txt unreadable)
    robots_only: bool = False  # not a page: ``check_robots`` of url, a robots.txt
    fetch_seconds: float | None = None  # request to last byte read (None: not requested)
    sitemap_job: bool = False  # not a page: a sitemap (or where they are)
    sitemap: SitemapContent | None = None  # what it lists (None: it could not be read)
    guessed: bool = False  # a sitemap found by its usual name, not listed anywhere
    etag: str = ""  # the page's validators as served ('' when it sent none)
    last_modified: str = ""
    not_modified: bool = False  # 304 to a conditional GET: what it referenced last holds
    script_hints: tuple[str, ...] = ()  # why its scripts may build images (render.hints)
    rendered: bool = False  # went through the render stage
    rendered_images: int = 0  # images only the render found (tagged "rendered")
    rendered_links: int = 0  # links only the render found
    render_error: str | None = None  # the render did not finish (what it had is kept)
    render_seconds: float | None = None
    render_blocked: tuple[str, ...] = ()  # requests the browser was refused (a few)
    render_host_stopped: bool = False  # auto renders no more pages of this host
    description: PageDescription | None = None  # its words for its images (describe)
    opt_out: str | None = None  # the page opts out of AI use: its signal (web.optout)


_local = threading.local()
_opened: list[requests.Session] = []  # every page thread's, for close_sessions
_opened_lock = threading.Lock()


def _session(config: CrawlConfig) -> requests.Session:
    """One Session per page thread and policy: connection reuse without sharing across
    threads, and never a session made for another address policy, User-Agent, CA
    bundle, cookies file or header rules."""
    sessions: dict = _local.__dict__.setdefault("sessions", {})
    options = session_options(config, os.environ)
    key = (config.allow_private, config.allow_networks, config.user_agent, options)
    if key not in sessions:  # (the policy is parsed once per session, not per request)
        policy = AddressPolicy.from_config(config)
        sessions[key] = make_session(PAGE_POOL_SIZE, config.user_agent, policy, options)
        with _opened_lock:
            _opened.append(sessions[key])
    return sessions[key]


def close_sessions() -> None:
    """Close the page threads' sessions (their connections); call once the threads are
    done (a thread that fetches again afterwards gets a working, fresh connection)."""
    with _opened_lock:
        opened, _opened[:] = list(_opened), []
    for session in opened:
        session.close()


MAX_STYLESHEET_BYTES = 2 * 1024 * 1024
MAX_IMPORT_DEPTH = 4


class StylesheetCache:
    """The image rules of each style sheet, fetched once per crawl and shared by the
    page threads; ``@import`` is followed (same host, a few levels, no cycles).

    It also keeps the sheet images some page already showed: the crawl has them, so
    later pages need not match their rules again (most pages of a site share its
    sheets, and matching may cost a parse of the whole page)."""

    def __init__(self, config: CrawlConfig, robots: RobotsCache | None) -> None:
        self.config = config
        self.robots = robots
        self._rules: dict[str, list[ImageRule]] = {}
        self._shown: set[str] = set()
        self._lock = threading.Lock()

    def rules(self, url: str, visiting: frozenset[str] = frozenset()) -> list[ImageRule]:
        """The image rules of the sheet at ``url`` and of those it imports."""
        with self._lock:
            if url in self._rules:
                return self._rules[url]
        css = self._fetch(url)
        rules = []
        for selector, references in stylesheet_image_rules(css):
            urls = [u for u in (resolve(url, reference) for reference in references) if u]
            if urls:
                rules.append(image_rule(selector, urls))
        if len(visiting) < MAX_IMPORT_DEPTH:
            for imported in (resolve(url, ref) for ref in import_urls(css)):
                if imported and imported not in visiting and host_of(imported) == host_of(url):
                    rules += self.rules(imported, visiting | {url})
        with self._lock:
            self._rules[url] = rules
        return rules

    def unshown(self, urls: list[str]) -> list[str]:
        """Those of ``urls`` no page has shown yet."""
        with self._lock:
            return [url for url in urls if url not in self._shown]

    def shown(self, urls: list[str]) -> None:
        with self._lock:
            self._shown.update(urls)

    def _fetch(self, url: str) -> str:
        """The sheet's text; empty when it is missing, refused or not CSS."""
        if self.robots is not None and not self.robots.allowed(url):
            return ""
        try:
            status, mime, body = _get_small(url, self.config, MAX_STYLESHEET_BYTES)
        except (UnsafeTarget, requests.RequestException):
            return ""
        if status >= 400 or mime not in ("", "text/css", "text/plain"):
            return ""
        return body.decode("utf-8", errors="replace")


def _open(
    url: str, config: CrawlConfig, headers: dict[str, str] | None = None
) -> requests.Response:
    """GET ``url`` as a checked stream with the page settings; the caller closes it."""
    session = _session(config)
    return open_url(session, url, config.page_timeout, config.max_redirects, headers)


def _get_small(url: str, config: CrawlConfig, limit: int) -> tuple[int, str, bytes]:
    """GET at most ``limit`` bytes of ``url``: (status, lower-case MIME type, body)."""
    with _open(url, config) as response:
        mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return response.status_code, mime, _read_limited(response, limit)


def fetch_robots(url: str, config: CrawlConfig) -> RobotsResponse:
    """GET a robots.txt: its status and body, or no status and why it could not be read.

    A host we may not contact at all counts as having none: the page fetch that
    follows then reports the real reason (``blocked_address``). So do redirect loops
    (RFC 9309 lets a crawler take them for a missing file); a body we cannot decode
    is a file we cannot read.
    """
    try:
        status, _mime, body = _get_small(url, config, ROBOTS_MAX_BYTES)
    except BadEncoding as exc:
        return RobotsResponse(None, b"", f"{exc.code}: {exc}")
    except UnsafeTarget:
        return RobotsResponse(404)
    except requests.RequestException as exc:
        return RobotsResponse(None, b"", *describe_request_error(exc))
    return RobotsResponse(status, body)


def fetch_tdmrep(url: str, config: CrawlConfig) -> tuple[int, bytes]:
    """GET a TDMRep file (``tdmrep.TdmRepCache``): status and body, status 0 when it
    could not be read (no answer, a refused address, a body too odd to decode)."""
    try:
        status, _mime, body = _get_small(url, config, MAX_TDMREP_BYTES)
    except (BadEncoding, UnsafeTarget, requests.RequestException):
        return 0, b""
    return status, body


def check_robots(url: str, robots: RobotsCache) -> PageResult:
    """Read the robots.txt of ``url``'s host again if its next try is due (for images
    held on it), as a ``robots_only`` result the harvester's page loop takes: its
    ``error`` and ``unreachable`` say what a page of the host would have met."""
    page = PageResult(url=robots_url(url), depth=0, robots_only=True)
    failure = robots.judge(url)[1]
    if failure is not None:
        _note_unreadable_robots(page, failure)
    return page


def _note_unreadable_robots(page: PageResult, failure: RobotsFailure) -> None:
    page.error = f"{UNREACHABLE}: {failure.reason}"
    page.retryable = failure.retryable
    page.unreachable = failure.no_answer  # so politeness pauses the host, as for a page


def fetch_page(
    url: str,
    depth: int,
    config: CrawlConfig,
    robots: RobotsCache | None = None,
    stylesheets: StylesheetCache | None = None,
    parse: Callable[[bytes, str, str | None], PageContent] = extract_page,
    referer: str | None = None,
    match: Callable[[bytes, str | None, list[str]], list[bool]] = match_page_selectors,
    validators: tuple[str, str] = ("", ""),
    render: RenderStage | None = None,
) -> PageResult:
    """GET a page (at most ``max_page_bytes`` of it), with ``referer`` as its
    ``Referer``, and extract images and links.

    A response that is an image (a link without an image extension) is flagged so the
    harvester queues it as an image; other non-HTML responses are skipped. With
    ``robots``, a disallowed page is not fetched, and disallowed images are set apart;
    while the robots.txt of the page's host cannot be read the page is not fetched
    (``robots_unreachable``, retryable unless it is a TLS failure), and images on such
    hosts are ``held_images``.
    ``parse`` is ``extract_page`` or its stand-in (the harvester's ``PageParser``
    runs it in worker processes), ``match`` the same for ``match_page_selectors``:
    the page's own-host style sheets show an image only where a rule's selector
    matches an element of the page. With ``validators`` (the ETag and Last-Modified
    the page was last served with) the GET is conditional: a 304 is ``not_modified``,
    with nothing extracted. With ``render``, a page it wants is also rendered, and the
    images and links only the render found are added (``render.stage``).
    """
    page = PageResult(url=url, depth=depth)
    verdict, failure = (None, None) if robots is None else robots.judge(url)
    if verdict == DISALLOWED:
        page.error = DISALLOWED
        return page
    if failure is not None:
        _note_unreadable_robots(page, failure)
        return page
    started = time.monotonic()
    try:
        with _open(url, config, _page_headers(referer, validators)) as response:
            page.status = response.status_code
            page.final_url = normalize(response.url) or url
            page.content_type = response.headers.get("Content-Type", "")
            page.opt_out = response_opt_out(response.headers, product_token(config.user_agent))
            page.etag = response.headers.get("ETag", "")[:MAX_VALIDATOR_CHARS]
            page.last_modified = response.headers.get("Last-Modified", "")[:MAX_VALIDATOR_CHARS]
            mime = page.content_type.split(";")[0].strip().lower()
            if response.status_code == 304 and any(validators):
                page.not_modified = True
                return page
            if response.status_code >= 400:
                page.error = f"http_{response.status_code}"
                return page
            if mime.startswith("image/"):
                page.is_image = True
                return page
            if mime and mime not in HTML_TYPES:
                page.error = "not_html"
                return page
            body = _read_limited(response, config.max_page_bytes)
            page.truncated = len(body) >= config.max_page_bytes
    except UnsafeTarget as exc:
        page.error = f"{exc.code}: {exc}"
        return page
    except requests.RequestException as exc:
        page.error, page.retryable = describe_request_error(exc)
        # No answer at all (refused, reset, timed out): politeness pauses such a host.
        page.unreachable = page.status is None and is_no_answer(page.error)
        return page
    finally:
        page.fetch_seconds = time.monotonic() - started
    if _looks_binary(body):
        page.error = "not_html"
        return page
    try:
        content = parse(body, page.final_url, page.content_type)
    except Exception as exc:  # hostile markup must not stop the crawl
        page.error = f"parse_error: {type(exc).__name__}"
        return page
    page.images, page.links = content.images, content.links
    page.nofollow_links = content.nofollow_links
    page.script_hints = content.script_hints
    page.description = content.description
    page.opt_out = page.opt_out or content.opt_out
    if stylesheets is not None:
        shown = _stylesheet_images(
            content,
            page.final_url or url,
            stylesheets,
            lambda selectors: match(body, page.content_type, selectors),
        )
        page.images += shown
    if render is not None and render.wanted(page.final_url, content.script_hints):
        _render(page, body, content, render, parse)
    if robots is not None:
        verdicts = [robots.verdict(ref.url) for ref in page.images]
        found = list(zip(page.images, verdicts, strict=True))
        page.refused_images = [ref for ref, verdict in found if verdict == DISALLOWED]
        page.held_images = [ref for ref, verdict in found if verdict == UNREACHABLE]
        page.images = [ref for ref, verdict in found if verdict not in (DISALLOWED, UNREACHABLE)]
    return page


MAX_VALIDATOR_CHARS = 256


def _render(
    page: PageResult,
    body: bytes,
    content: PageContent,
    render: RenderStage,
    parse: Callable[[bytes, str, str | None], PageContent],
) -> None:
    """Add to ``page`` what rendering it finds beyond its static parse."""
    assert page.final_url is not None
    static = PageContent(page.images, page.links, [], page.nofollow_links, content.tokens)
    added = render.render(page.final_url, body, page.content_type, static, parse)
    page.rendered = True
    page.images += added.images
    page.links += added.links
    page.nofollow_links += added.nofollow_links
    page.rendered_images, page.rendered_links = len(added.images), len(added.links)
    page.render_error, page.render_seconds = added.error, added.seconds
    page.render_blocked, page.render_host_stopped = added.blocked, added.host_stopped


def fetch_resource(
    url: str, config: CrawlConfig, referer: str, robots: RobotsCache | None = None
) -> tuple[int, str, bytes]:
    """GET a resource a rendered page asks for (a script, a style sheet, data), as the
    crawl fetches pages: its address policy, proxy, TLS and cookies, with ``referer``,
    at most ``max_page_bytes``: (status, content type, body). Raises ``UnsafeTarget``
    for an address or a URL (``robots``: one robots.txt disallows) it may not fetch."""
    if robots is not None and robots.verdict(url) == DISALLOWED:
        raise UnsafeTarget("disallowed by robots.txt")
    with _open(url, config, _page_headers(referer, ("", ""))) as response:
        content_type = response.headers.get("Content-Type", "")
        return response.status_code, content_type, _read_limited(response, config.max_page_bytes)


def _page_headers(referer: str | None, validators: tuple[str, str]) -> dict[str, str] | None:
    """A page request's own headers: its Referer, and the validators of a recrawl."""
    etag, last_modified = validators
    headers = {
        name: value
        for name, value in (
            ("Referer", referer),
            ("If-None-Match", etag),
            ("If-Modified-Since", last_modified),
        )
        if value
    }
    return headers or None


def find_sitemaps(origin: str, config: CrawlConfig, robots: RobotsCache | None) -> PageResult:
    """Where a site's sitemaps are: the ``Sitemap:`` lines of its robots.txt, else
    ``/sitemap.xml`` (as a ``sitemap`` result listing them, for the harvester's loop)."""
    page = PageResult(url=origin, depth=0, sitemap_job=True)
    listed = robots.sitemaps(origin) if robots is not None else []
    robots_file = robots_url(origin)
    found = [u for u in (resolve(robots_file, text) for text in listed) if u]
    page.guessed = not found
    page.sitemap = SitemapContent(sitemaps=found or [resolve(origin, "/sitemap.xml") or origin])
    return page


def fetch_sitemap(url: str, config: CrawlConfig, robots: RobotsCache | None) -> PageResult:
    """GET one sitemap (at most ``MAX_SITEMAP_BYTES``, gzip or not) and what it lists;
    its images are split as a page's are: allowed, refused and held by robots.txt."""
    page = PageResult(url=url, depth=0, sitemap_job=True)
    if robots is not None and robots.verdict(url) == DISALLOWED:
        page.error = DISALLOWED
        return page
    started = time.monotonic()
    try:
        page.status, _mime, body = _get_small(url, config, MAX_SITEMAP_BYTES)
    except UnsafeTarget as exc:
        page.error = f"{exc.code}: {exc}"
        return page
    except requests.RequestException as exc:
        page.error = describe_request_error(exc)[0]
        return page
    finally:
        page.fetch_seconds = time.monotonic() - started
    if page.status >= 400:
        page.error = f"http_{page.status}"
        return page
    try:
        content = parse_sitemap(body, url)
    except NotASitemap as exc:
        page.error = f"not_a_sitemap: {exc}"
        return page
    if robots is not None:
        verdicts = [robots.verdict(image) for image, _ in content.images]
        found = list(zip(content.images, verdicts, strict=True))
        page.refused_images = [ImageRef(i, "sitemap") for (i, _), v in found if v == DISALLOWED]
        page.held_images = [ImageRef(i, "sitemap") for (i, _), v in found if v == UNREACHABLE]
        content.images = [item for item, v in found if v not in (DISALLOWED, UNREACHABLE)]
    page.sitemap = content
    return page


def _stylesheet_images(
    content: PageContent,
    page_url: str,
    stylesheets: StylesheetCache,
    match: Callable[[list[str]], list[bool]],
) -> list[ImageRef]:
    """Images the page's own-host style sheets show on it (a rule's selector matches
    one of its elements) that neither the page named itself nor an earlier page showed.
    ``match`` is only called for the rules the page's names leave possible."""
    own = [sheet for sheet in content.stylesheets if host_of(sheet) == host_of(page_url)]
    named = {ref.url for ref in content.images}
    rules = []
    for rule in (rule for sheet in own for rule in stylesheets.rules(sheet)):
        urls = [u for u in stylesheets.unshown(list(rule.urls)) if u not in named]
        if urls:
            rules.append(ImageRule(rule.selector, tuple(urls), rule.needs))
    found: dict[str, None] = {}
    for rule in applied_rules(rules, content.tokens, match):
        found.update(dict.fromkeys(rule.urls))
    stylesheets.shown(list(found))
    return [ImageRef(image, "stylesheet") for image in found]


def _looks_binary(body: bytes) -> bool:
    """An image or binary junk served as (or without) text/html."""
    head = body[:1024]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 text has NUL bytes and a byte order mark
    if b"\x00" in head:
        return True
    sniffed = sniff_image_type(head)
    return sniffed is not None and sniffed[1] != "svg"


def _read_limited(response: requests.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in body_chunks(response):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
