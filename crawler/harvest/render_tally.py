"""What the render stage did in a crawl, and what a crawl without it may have missed.

Pages whose scripts look like they build images or links (``render.hints``) and that
were not rendered are counted and a few named, so that a crawl with ``--render never``
says when ``--render auto`` would pay; rendered pages count what only the browser found.
"""

from __future__ import annotations

from typing import Any

from crawler.web.pages import PageResult

EXAMPLES_KEPT = 3


class RenderTally:
    """Counts of this run's pages (``page`` once per fetched HTML page)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hinted_unrendered = 0
        self.examples: list[str] = []
        self.rendered = 0
        self.images = 0  # found only by rendering
        self.links = 0
        self.errors = 0
        self.seconds = 0.0

    def page(self, page: PageResult) -> dict[str, Any]:
        """Count ``page``; the fields its ``page_fetched`` event gets (None: left out)."""
        if page.rendered:
            self.rendered += 1
            self.images += page.rendered_images
            self.links += page.rendered_links
            self.errors += page.render_error is not None
            self.seconds += page.render_seconds or 0.0
        elif page.script_hints:
            self.hinted_unrendered += 1
            if len(self.examples) < EXAMPLES_KEPT:
                self.examples.append(page.url)
        return {
            "scripts": ",".join(page.script_hints) or None,
            "rendered": 1 if page.rendered else None,
            "rendered_images": page.rendered_images or None,
            "rendered_links": page.rendered_links or None,
            "render_error": page.render_error,
            "render_seconds": round(page.render_seconds, 2) if page.rendered else None,
            "render_blocked": len(page.render_blocked) or None,
        }

    def summary(self) -> str:
        """The summary line's part about rendering ('' when there is nothing to say)."""
        parts = []
        if self.rendered:
            mean = self.seconds / self.rendered
            part = (
                f"{self.rendered} pages rendered ({self.images} images and {self.links} links "
                f"only the browser found, {mean:.1f} s a page"
            )
            part += f", {self.errors} did not finish)" if self.errors else ")"
            parts.append(part)
        if self.hinted_unrendered:
            named = ", ".join(self.examples)
            more = "" if self.hinted_unrendered <= len(self.examples) else ", ..."
            advice = (
                "--render auto would render them"
                if self.mode == "never"
                else "not rendered: auto stopped where rendering found nothing new"
            )
            parts.append(
                f"{self.hinted_unrendered} pages have scripts that may build images or links "
                f"({named}{more}): {advice}"
            )
        return "".join(f", {part}" for part in parts)
