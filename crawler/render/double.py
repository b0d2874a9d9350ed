"""A renderer without a browser, for tests of the crawl loop and the page path."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from crawler.render.base import RenderRequest, RenderResult


class ScriptedRenderer:
    """Answers each URL with the ``RenderResult`` given for it (an error for others),
    and keeps the requests it was handed, in order, in ``rendered``."""

    def __init__(self, results: Mapping[str, RenderResult]) -> None:
        self.results = dict(results)
        self.rendered: list[RenderRequest] = []
        self.closed = False
        self._lock = threading.Lock()

    def render(self, request: RenderRequest) -> RenderResult:
        with self._lock:
            self.rendered.append(request)
        return self.results.get(request.url, RenderResult(error="render_failed: not scripted"))

    def close(self) -> None:
        self.closed = True
