"""The render stage of ``fetch_page``: which pages go to the renderer, and what it adds.

A rendered page keeps everything its static parse found; the render adds the images
and links that only it found: those of the DOM after scripts ran (parsed by the same
extraction as the page as served) and the images the browser requested (style-sheet
backgrounds of elements scripts made, preloads). They are tagged ``rendered``. A
render that failed or timed out still adds what it had by then, and never takes away
what the static parse found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from crawler.render.base import Renderer, RenderRequest, RenderResult
from crawler.render.hints import AutoRender, should_render
from crawler.urls import host_of, normalize
from crawler.web.extract import ImageRef, PageContent

RENDERED = "rendered"  # the kind of an image only the render found


@dataclass(frozen=True)
class Rendered:
    """What a render added to a page, and how it went."""

    images: list[ImageRef]
    links: list[str]
    nofollow_links: list[str]
    error: str | None
    seconds: float
    blocked: tuple[str, ...] = ()
    host_stopped: bool = False  # auto stops rendering this page's host after this one


class RenderStage:
    """``--render`` for the page path: ``mode`` (never, auto, always) and the renderer
    (None with ``never``); ``auto`` keeps the auto mode's host-by-host payoff."""

    def __init__(
        self,
        mode: str,
        renderer: Renderer | None,
        user_agent: str = "",
        auto: AutoRender | None = None,
    ) -> None:
        self.mode = mode
        self.renderer = renderer
        self.user_agent = user_agent
        self.auto = auto or AutoRender()

    def wanted(self, url: str, hints: tuple[str, ...]) -> bool:
        if self.renderer is None or not should_render(self.mode, hints):
            return False
        return self.mode == "always" or self.auto.wanted(host_of(url), hints)

    def render(
        self,
        url: str,
        body: bytes,
        content_type: str,
        static: PageContent,
        parse: Callable[[bytes, str, str | None], PageContent],
    ) -> Rendered:
        """Render the page (``wanted`` said so) and return what it adds to ``static``."""
        assert self.renderer is not None
        result = self.renderer.render(RenderRequest(url, body, content_type, self.user_agent))
        rendered = _added(result, url, static, parse)
        found_new = bool(rendered.images or rendered.links)
        if self.mode == "auto" and self.auto.rendered(host_of(url), found_new):
            return replace(rendered, host_stopped=True)
        return rendered


def _added(
    result: RenderResult,
    url: str,
    static: PageContent,
    parse: Callable[[bytes, str, str | None], PageContent],
) -> Rendered:
    error = result.error
    dom = PageContent()
    if result.dom:
        try:
            dom = parse(result.dom.encode("utf-8"), url, "text/html; charset=utf-8")
        except Exception as exc:  # hostile markup must not stop the crawl
            error = error or f"render_failed: parse_error: {type(exc).__name__}"
    known_images = {ref.url for ref in static.images}
    images: dict[str, None] = {}
    for candidate in [ref.url for ref in dom.images] + [normalize(u) or "" for u in result.images]:
        if candidate and candidate not in known_images and _is_http(candidate):
            images[candidate] = None
    known_links = set(static.links) | set(static.nofollow_links)
    links = [link for link in dom.links if link not in known_links]
    nofollow = [link for link in dom.nofollow_links if link not in known_links]
    return Rendered(
        [ImageRef(image, RENDERED) for image in images],
        links,
        nofollow,
        error,
        result.seconds,
        result.blocked,
    )


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))
