"""Which pages need a browser: the scripts that build images or links, read statically.

Pure functions on what extraction already parsed. ``script_hints`` names why a page's
scripts look like they make content a static parser cannot see (the reasons below);
``--render auto`` renders the pages that have one, and ``AutoRender`` stops rendering a
host once rendering its pages keeps finding nothing new. With ``--render never`` the
same hints are counted, so that the summary can say what may have been missed.

Reasons:
    builds images   inline code that makes images: ``createElement('img')``, ``new Image``,
                    ``<img`` markup in a string, or image-file literals put in the DOM
    builds links    inline code that makes links: ``createElement('a')``, ``<a href`` markup
    loads content   inline code that fetches data (``fetch``, XHR) and puts it in the DOM
    image library   a script whose file name is a lazy-loading, slider or gallery library
    app shell       a framework's empty mount point (``#root``, ``#app``, ``#__next``...)
                    and next to nothing else on the page
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

BUILDS_IMAGES = "builds images"
BUILDS_LINKS = "builds links"
LOADS_CONTENT = "loads content"
IMAGE_LIBRARY = "image library"
APP_SHELL = "app shell"

# Of each inline script, this much is read (a page may inline megabytes of JSON).
SCRIPT_CHARS_READ = 64 * 1024

_MAKES_IMAGE = re.compile(
    r"""createElement\(\s*['"`](?:img|picture|source)['"`]|new\s+Image\s*\(|<img\b""", re.I
)
_IMAGE_LITERAL = re.compile(
    r"""[^'"`\s]\.(?:jpe?g|png|gif|webp|avif|svg)(?:\?[^'"`\s]*)?['"`]""", re.I
)
_INTO_DOM = re.compile(
    r"appendChild|\.append\(|\.prepend\(|insertBefore|insertAdjacent|innerHTML|outerHTML"
    r"|replaceChildren|document\.write|\.(?:src|srcset)\s*=[^=]|setAttribute\(\s*['\"`](?:src|srcset)"
    r"|backgroundImage|\.html\(",
)
_MAKES_LINK = re.compile(r"""createElement\(\s*['"`]a['"`]|<a\s[^'"`>]*href""", re.I)
_FETCHES = re.compile(r"\bfetch\s*\(|XMLHttpRequest|\$\.(?:get|getJSON|ajax)\s*\(|axios\.")
# File names of libraries whose job is showing images (lazy loading, sliders, galleries).
_IMAGE_LIBRARIES = re.compile(
    r"lazysizes|lozad|lazyload|vanilla-lazyload|swiper|slick|glide|flickity|splide|owl\.carousel"
    r"|lightgallery|photoswipe|fancybox|lightbox|masonry|isotope|infinite-scroll|baguettebox"
    r"|galleria|unitegallery|justified-gallery",
    re.I,
)
_MOUNT_POINTS = frozenset({"root", "app", "__next", "__nuxt", "___gatsby", "svelte", "main-app"})
# An app shell shows next to nothing statically: at most this many images and links.
APP_SHELL_MAX_FOUND = 2


@dataclass(frozen=True)
class Script:
    """A ``<script>`` as served: its ``src`` ('' when inline) and (inline) its text."""

    src: str = ""
    text: str = ""


def script_hints(
    scripts: Iterable[Script], ids: Iterable[str], images: int, links: int
) -> tuple[str, ...]:
    """Why a page's scripts look like they build what a static parser cannot see (the
    module's reasons, in that order); () for a page whose scripts do not, or that has
    none. ``ids`` are the page's element ids, ``images`` and ``links`` what extraction
    found in it as served."""
    reasons: dict[str, None] = {}
    has_script = False
    for script in scripts:
        has_script = True
        if script.src:
            name = script.src.rsplit("/", 1)[-1]
            if _IMAGE_LIBRARIES.search(name):
                reasons[IMAGE_LIBRARY] = None
            continue
        code = script.text[:SCRIPT_CHARS_READ]
        into_dom = _INTO_DOM.search(code) is not None
        if _MAKES_IMAGE.search(code) or (into_dom and _IMAGE_LITERAL.search(code)):
            reasons[BUILDS_IMAGES] = None
        if _MAKES_LINK.search(code):
            reasons[BUILDS_LINKS] = None
        if into_dom and _FETCHES.search(code):
            reasons[LOADS_CONTENT] = None
    if has_script and images + links <= APP_SHELL_MAX_FOUND and _MOUNT_POINTS & set(ids):
        reasons[APP_SHELL] = None
    order = (BUILDS_IMAGES, BUILDS_LINKS, LOADS_CONTENT, IMAGE_LIBRARY, APP_SHELL)
    return tuple(reason for reason in order if reason in reasons)


# ``--render auto`` renders a host's pages with hints until this many renders in a row
# found nothing the static parse had not (no new image, no new link): then it stops
# rendering that host, and says so.
AUTO_FRUITLESS_RENDERS = 5


class AutoRender:
    """The ``auto`` mode's choice, page by page: render a page with hints, unless its
    host's last ``AUTO_FRUITLESS_RENDERS`` renders all found nothing new. Thread-safe."""

    def __init__(self, fruitless_limit: int = AUTO_FRUITLESS_RENDERS) -> None:
        self.fruitless_limit = fruitless_limit
        self._fruitless: dict[str, int] = {}
        self._lock = threading.Lock()

    def wanted(self, host: str, hints: tuple[str, ...]) -> bool:
        if not hints:
            return False
        with self._lock:
            return self._fruitless.get(host, 0) < self.fruitless_limit

    def rendered(self, host: str, found_new: bool) -> bool:
        """Record a render's payoff; True when this one made the host's renders stop."""
        with self._lock:
            before = self._fruitless.get(host, 0)
            if before >= self.fruitless_limit:
                return False
            now = 0 if found_new else before + 1
            self._fruitless[host] = now
            return now >= self.fruitless_limit


def should_render(mode: str, hints: tuple[str, ...]) -> bool:
    """``never``: no page; ``always``: every HTML page; ``auto``: pages with hints (the
    host-by-host payoff is ``AutoRender``'s)."""
    return mode == "always" or (mode == "auto" and bool(hints))
