"""What a renderer is given and returns, and the ``Renderer`` protocol.

A renderer loads a page that the crawl has already fetched (it is handed the body: the
site is not asked for it twice), lets its scripts run, scrolls it, and returns the DOM
as it then stands and the image URLs the browser asked for. Whatever the page does,
``render`` returns a ``RenderResult`` (an ``error`` when it could not finish), never
raises, and returns within its time bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RENDER_MODES = ("never", "auto", "always")


@dataclass(frozen=True)
class RenderRequest:
    """A page to render: its final URL and the body and type it was served with."""

    url: str
    html: bytes
    content_type: str
    user_agent: str = ""


@dataclass(frozen=True)
class RenderResult:
    """A rendered page.

    ``dom``: the document's markup after scripts ran and the page was scrolled ('' when
    nothing could be read); ``images``: the image URLs the browser requested, in order;
    ``blocked``: requests refused (address policy, scope, not GET), at most a few;
    ``error``: why the render did not finish (``render_timeout``, ``render_failed: ...``),
    in which case ``dom`` and ``images`` hold what there was by then."""

    dom: str = ""
    images: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0


class Renderer(Protocol):
    """Renders pages; ``render`` may be called from many threads at once."""

    def render(self, request: RenderRequest) -> RenderResult: ...

    def close(self) -> None: ...
