"""Render pages in Debian's headless Chromium, driven by Playwright (no browser download).

The browser never touches the network itself. Every request it makes is routed here:

* the page's own document is answered with the body the crawl already fetched (the
  site is not asked twice, and the DOM is the one the static parse saw);
* images are answered with a 1x1 GIF and recorded: the downloaders fetch them, the
  harvester does not;
* scripts, style sheets, data (XHR, ``fetch``) and same-host frames are fetched by the
  crawl's own HTTP client (``fetch_resource``: its address policy, proxy, CA bundle,
  cookies and User-Agent; robots.txt when obeyed), GET only, and handed over;
* anything else (fonts, media, other methods, navigation away, more than
  ``render_max_requests``) fails.

Whatever a page's scripts try, the browser can reach only what the crawl may fetch; as
a backstop against anything the routing does not see (WebSockets, preconnects), its
proxy is a local socket that closes every connection, and it resolves no host name.

Rendering runs on one asyncio loop in a thread of its own; ``render`` may be called
from any thread, at most ``render_concurrency`` pages at once (the others wait), each in
a tab of its own (a browser context, reused for up to ``PAGES_PER_TAB`` pages, on a
blank page in between), within ``render_timeout`` (then what the page shows is read).
The browser is started on the first render, and again after
``render_pages_per_browser`` pages or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.compat.playwright import start_playwright
from crawler.config import RenderConfig
from crawler.errors import ConfigError, UnsafeTarget
from crawler.render.base import RenderRequest, RenderResult
from crawler.urls import host_of, normalize

# (status, content type, body) of a GET; raises for a refused address or a network error.
Fetch = Callable[[str, str], tuple[int, str, bytes]]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# As root (CI, containers) Chromium needs --no-sandbox; the rest keep it from calling home
# (on a closed network its own background connections are refused many at a time).
QUIET_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHROMIUM_FLAGS = (
    *QUIET_FLAGS,
    "--disable-dev-shm-usage",
    # A page's script heap is bounded: one that allocates without end crashes its own
    # renderer (that render fails), not the machine.
    "--js-flags=--max-old-space-size=512",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-bypass-list=<-loopback>",
)
VIEWPORT = {"width": 1280, "height": 900}
# 1x1 transparent GIF: what every image request is answered with.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
FETCHED_KINDS = frozenset({"script", "stylesheet", "xhr", "fetch", "document"})
CACHED_KINDS = frozenset({"script", "stylesheet"})
MAX_SCROLL_STEPS = 25
SCROLL_PAUSE_MS = 120
# After load and scrolling, the render waits until no request has been in flight for
# QUIET_SECONDS (every request goes through the route handler, which counts them), at
# most SETTLE_SECONDS.
QUIET_SECONDS = 0.3
SETTLE_SECONDS = 2.0
READ_DOM_SECONDS = 2.0
CLOSE_SECONDS = 5.0
MAX_BLOCKED_KEPT = 10
# A tab (context and page) renders this many pages, then a fresh one is made; a render
# that failed or timed out closes its tab at once.
PAGES_PER_TAB = 20
MAX_IMAGES_KEPT = 5000
CACHE_BYTES = 32 * 1024 * 1024
CACHE_ENTRY_BYTES = 2 * 1024 * 1024


def find_chromium(configured: str = "") -> str:
    """The Chromium binary to run: ``configured``, else the first of ``CHROMIUM_NAMES``
    on PATH. Raises ``ConfigError`` (saying how to get one) when there is none."""
    if configured:
        if Path(configured).is_file() and os.access(configured, os.X_OK):
            return configured
        raise ConfigError(f"chromium: {configured!r} is not an executable file")
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        "--render needs Chromium and none was found on PATH: install Debian's chromium "
        "package (apt-get install chromium) or set the chromium key to its path"
    )


class _ResourceCache:
    """Scripts and style sheets by URL, shared by the renders of a crawl (most pages of a
    site load the same ones): at most ``CACHE_BYTES``, least recently used out first."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self._entries: OrderedDict[str, tuple[int, str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> tuple[int, str, bytes] | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
            return entry

    def put(self, url: str, entry: tuple[int, str, bytes]) -> None:
        if entry[0] != 200 or len(entry[2]) > CACHE_ENTRY_BYTES:
            return
        with self._lock:
            if url in self._entries:
                return
            self._entries[url] = entry
            self.size += len(entry[2])
            while self.size > self.limit:
                _, old = self._entries.popitem(last=False)
                self.size -= len(old[2])


class _ClosingProxy:
    """A local socket that accepts connections and closes them at once: the browser's
    proxy, so that a connection the routing does not see goes nowhere."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._serve, name="render-proxy", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            connection.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


@dataclass
class _Page:
    """One render's bookkeeping, filled in by the route handler."""

    request: RenderRequest
    host: str
    served_document: bool = False
    requests: int = 0
    in_flight: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    images: dict[str, None] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)

    def block(self, url: str, why: str) -> None:
        if len(self.blocked) < MAX_BLOCKED_KEPT:
            self.blocked.append(f"{why}: {url[:200]}")


@dataclass
class _Tab:
    """A browser context and its page, reused by one render after another."""

    context: Any
    page: Any
    user_agent: str
    state: _Page | None = None  # the render it is doing
    renders: int = 0


@dataclass
class _Browser:
    browser: Any
    rendered: int = 0
    active: int = 0
    dead: bool = False
    tabs: list[_Tab] = field(default_factory=list)  # parked, for the next renders


class ChromiumRenderer:
    """``Renderer`` on a local headless Chromium (see the module's docstring).

    ``fetch`` GETs a resource for the browser (url, referer) -> (status, content type,
    body), raising ``UnsafeTarget`` for an address the crawl may not contact;
    ``frame_allowed`` says which frame documents may load (default: the page's host)."""

    def __init__(
        self,
        settings: RenderConfig,
        fetch: Fetch,
        frame_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.binary = find_chromium(settings.chromium)
        self._fetch = fetch
        self._frame_allowed = frame_allowed
        self._slots = threading.BoundedSemaphore(settings.render_concurrency)
        self._fetchers = ThreadPoolExecutor(4 * settings.render_concurrency, "render-fetch")
        self._cache = _ResourceCache()
        self._proxy = _ClosingProxy()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="render", daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self._current: _Browser | None = None
        self._launching: asyncio.Lock | None = None
        self._closed = False
        self._closing: set[asyncio.Future[None]] = set()  # browsers being closed
        self.launches = 0

    # -- the calling threads' side --------------------------------------------------

    def render(self, request: RenderRequest) -> RenderResult:
        started = time.monotonic()
        with self._slots:
            if self._closed:
                return RenderResult(error="render_failed: renderer closed")
            job = asyncio.run_coroutine_threadsafe(self._render(request), self._loop)
            try:
                return job.result(self.settings.render_timeout + READ_DOM_SECONDS + CLOSE_SECONDS)
            except FutureTimeout:
                job.cancel()
                self._loop.call_soon_threadsafe(self._retire_current)
                return RenderResult(error="render_timeout", seconds=time.monotonic() - started)
            except Exception as exc:  # the loop is gone (closed meanwhile)
                return RenderResult(error=f"render_failed: {type(exc).__name__}")

    def browser_pids(self) -> list[int]:
        """The running browser's processes (for memory figures); [] when none runs."""
        return [pid for pid in descendant_pids(os.getpid()) if _is_chromium(pid, self.binary)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._fetchers.shutdown(wait=False, cancel_futures=True)
        self._proxy.close()

    # -- the loop's side ------------------------------------------------------------

    async def _render(self, request: RenderRequest) -> RenderResult:
        started = time.monotonic()
        try:
            holder = await self._browser()
        except Exception as exc:
            return RenderResult(error=f"render_failed: cannot start Chromium: {_first_line(exc)}")
        page_state = _Page(request, host_of(request.url))
        holder.active += 1
        try:
            return await asyncio.wait_for(
                self._render_in(holder, page_state, started),
                self.settings.render_timeout + READ_DOM_SECONDS + CLOSE_SECONDS,
            )
        except TimeoutError:
            holder.dead = True  # a page that keeps the browser busy: start a fresh one
            return self._result(page_state, "", "render_timeout", started)
        finally:
            holder.active -= 1
            holder.rendered += 1
            if holder.dead or holder.rendered >= self.settings.render_pages_per_browser:
                self._retire(holder)

    async def _render_in(self, holder: _Browser, state: _Page, started: float) -> RenderResult:
        from playwright.async_api import Error as PlaywrightError

        request = state.request
        tab = await self._tab(holder, request.user_agent)
        tab.state = state
        error = None
        dom = ""
        completed = False
        try:
            deadline = started + self.settings.render_timeout
            try:
                await tab.page.goto(request.url, wait_until="load", timeout=_ms_left(deadline))
                await _scroll(tab.page, deadline)
                await _settle(state, deadline)
            except PlaywrightError as exc:
                error = "render_timeout" if "Timeout" in str(exc) else f"render_failed: {exc}"
            with contextlib.suppress(PlaywrightError, TimeoutError):
                dom = await asyncio.wait_for(tab.page.content(), READ_DOM_SECONDS)
            completed = True
        finally:
            tab.renders += 1
            tab.state = None
            if not completed:  # cancelled (past its bound): the browser goes, tab and all
                holder.dead = True
            elif error is None and tab.renders < PAGES_PER_TAB and not holder.dead:
                await self._park(holder, tab)
            else:
                await self._close_tab(holder, tab)
        if error and error.startswith("render_failed"):
            error = f"render_failed: {_first_line(error.split(': ', 1)[1])}"
        return self._result(state, dom, error, started)

    async def _tab(self, holder: _Browser, user_agent: str) -> _Tab:
        """A parked tab of ``holder`` for ``user_agent``, or a new one (its own context)."""
        while holder.tabs:
            tab = holder.tabs.pop()
            if tab.user_agent == user_agent:
                return tab
            await self._close_tab(holder, tab)
        context = await holder.browser.new_context(
            user_agent=user_agent or None,
            viewport=VIEWPORT,
            service_workers="block",
            accept_downloads=False,
        )
        tab = _Tab(context, None, user_agent)
        # Each request belongs to the render the tab is doing when it is made.
        await context.route("**/*", lambda route: self._route(route, tab.state))
        tab.page = await context.new_page()
        tab.page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        return tab

    async def _park(self, holder: _Browser, tab: _Tab) -> None:
        """Keep ``tab`` for the next render, on a blank page: what the last one's page
        still does (timers, requests) ends here, before another page is loaded."""
        from playwright.async_api import Error as PlaywrightError

        try:
            await asyncio.wait_for(tab.page.goto("about:blank"), CLOSE_SECONDS)
        except (PlaywrightError, TimeoutError):
            await self._close_tab(holder, tab)
            return
        holder.tabs.append(tab)

    async def _close_tab(self, holder: _Browser, tab: _Tab) -> None:
        from playwright.async_api import Error as PlaywrightError

        try:
            await asyncio.wait_for(tab.context.close(), CLOSE_SECONDS)
        except (PlaywrightError, TimeoutError):
            holder.dead = True

    def _result(self, state: _Page, dom: str, error: str | None, started: float) -> RenderResult:
        return RenderResult(
            dom=dom,
            images=tuple(state.images),
            blocked=tuple(state.blocked),
            error=error,
            seconds=time.monotonic() - started,
        )

    async def _route(self, route: Any, state: _Page | None) -> None:
        if state is None:  # (a parked tab loads nothing)
            with contextlib.suppress(Exception):
                await route.abort("blockedbyclient")
            return
        request = route.request
        url = request.url
        kind = request.resource_type
        state.requests += 1
        state.in_flight += 1
        state.last_activity = time.monotonic()
        try:
            if state.requests > self.settings.render_max_requests:
                state.block(url, "too many requests")
                await route.abort("blockedbyclient")
            elif request.method not in ("GET", "HEAD"):
                state.block(url, request.method)
                await route.abort("blockedbyclient")
            elif kind == "document" and request.frame.parent_frame is None:
                await self._main_document(route, state, url)
            elif kind == "image":
                # A frame's images are its own page's: the frame is crawled as a link.
                own = request.frame.parent_frame is None
                if own and len(state.images) < MAX_IMAGES_KEPT:
                    state.images[url] = None
                await route.fulfill(status=200, content_type="image/gif", body=PIXEL)
            elif kind not in FETCHED_KINDS:
                await route.abort("blockedbyclient")
            elif kind == "document" and not self._frame_ok(url, state):
                state.block(url, "frame out of scope")
                await route.abort("blockedbyclient")
            else:
                await self._fetched(route, state, url, kind)
        except Exception:  # the page or context closed meanwhile: nothing to answer
            return
        finally:
            state.in_flight -= 1
            state.last_activity = time.monotonic()

    async def _main_document(self, route: Any, state: _Page, url: str) -> None:
        request = state.request
        if state.served_document or normalize(url) != normalize(request.url):
            state.block(url, "navigation")  # a script leaving the page: it stays
            await route.abort("blockedbyclient")
            return
        state.served_document = True
        await route.fulfill(status=200, content_type=request.content_type, body=request.html)

    def _frame_ok(self, url: str, state: _Page) -> bool:
        if self._frame_allowed is not None:
            return self._frame_allowed(url)
        return host_of(url) == state.host

    async def _fetched(self, route: Any, state: _Page, url: str, kind: str) -> None:
        entry = self._cache.get(url) if kind in CACHED_KINDS else None
        if entry is None:
            loop = asyncio.get_running_loop()
            try:
                entry = await loop.run_in_executor(
                    self._fetchers, self._fetch, url, state.request.url
                )
            except UnsafeTarget as exc:
                state.block(url, exc.code)
                await route.abort("blockedbyclient")
                return
            except Exception:
                await route.abort("failed")
                return
            if kind in CACHED_KINDS:
                self._cache.put(url, entry)
        status, content_type, body = entry
        await route.fulfill(status=status, content_type=content_type or None, body=body)

    async def _browser(self) -> _Browser:
        if self._launching is None:
            self._launching = asyncio.Lock()
        async with self._launching:
            current = self._current
            if current is not None and not current.dead and current.browser.is_connected():
                return current
            if self._playwright is None:
                self._playwright = await start_playwright()
            browser = await self._playwright.chromium.launch(
                executable_path=self.binary,
                headless=True,
                args=[*CHROMIUM_FLAGS, f"--proxy-server=http://{self._proxy.address}"],
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
                timeout=30_000,
            )
            self.launches += 1
            self._current = _Browser(browser)
            return self._current

    def _retire_current(self) -> None:
        if self._current is not None:
            self._current.dead = True
            self._retire(self._current)

    def _retire(self, holder: _Browser) -> None:
        """No new page goes to ``holder``; it is closed once its last page is done."""
        if self._current is holder:
            self._current = None
        if holder.active == 0:
            task = asyncio.ensure_future(_close_quietly(holder.browser))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            holder.dead = True

    async def _shutdown(self) -> None:
        if self._current is not None:
            await _close_quietly(self._current.browser)
            self._current = None
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._playwright.stop(), CLOSE_SECONDS)
            self._playwright = None


async def _cancel_others() -> None:
    """Cancel what is left on the loop (route handlers of pages closed meanwhile)."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


async def _close_quietly(browser: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(browser.close(), CLOSE_SECONDS)


def _ms_left(deadline: float) -> float:
    return max(1.0, (deadline - time.monotonic()) * 1000)


async def _settle(state: _Page, deadline: float) -> None:
    """Wait until no request of the page has been in flight for ``QUIET_SECONDS``, at
    most ``SETTLE_SECONDS`` and never past ``deadline``."""
    until = min(deadline, time.monotonic() + SETTLE_SECONDS)
    while time.monotonic() < until:
        quiet_for = time.monotonic() - state.last_activity
        if state.in_flight == 0 and quiet_for >= QUIET_SECONDS:
            return
        await asyncio.sleep(0.05)


_SCROLL = """() => {
  window.scrollBy(0, window.innerHeight);
  const root = document.scrollingElement || document.documentElement;
  return window.innerHeight + window.scrollY >= root.scrollHeight - 2;
}"""


async def _scroll(page: Any, deadline: float) -> None:
    """Scroll down a screen at a time (lazy loaders load what nears the viewport), to
    the bottom, at most ``MAX_SCROLL_STEPS`` screens, never past ``deadline``."""
    for _ in range(MAX_SCROLL_STEPS):
        if time.monotonic() + SCROLL_PAUSE_MS / 1000 >= deadline:
            return
        at_end = await page.evaluate(_SCROLL)
        await page.wait_for_timeout(SCROLL_PAUSE_MS)
        if at_end:
            return


def _first_line(error: object) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def descendant_pids(root: int) -> list[int]:
    """The processes below ``root`` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _is_chromium(pid: int, binary: str) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return "chrom" in Path(exe).name or Path(exe) == Path(binary).resolve()


def pss_bytes(pids: list[int]) -> int:
    """The summed proportional memory (PSS: shared pages split between their users) of
    ``pids`` (Linux /proc; a process gone meanwhile counts 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total
