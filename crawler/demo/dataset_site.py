"""A site for dataset crawls, with its ground truth: galleries of figures with alt text
and captions, ``srcset`` and ``<picture>`` variants, resized and re-encoded copies of
pictures on other pages, and every opt-out signal (``X-Robots-Tag`` on an image and on
a page, ``<meta name=robots content=noai>``, the ``tdm-reservation`` header and meta,
and ``/.well-known/tdmrep.json``).

``DatasetSite.serve()`` serves it on 127.0.0.1 from memory, in a thread, logging each
request's path and the body bytes it managed to send (a client that stops reading
after the headers shows as a short count). Used by the tests and by
``scripts/dataset_bench.py``.
"""

from __future__ import annotations

import io
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

WIDTHS = (160, 320, 480)  # the srcset widths of every gallery picture
BIG_OPT_OUT_BYTES = 4 * 1024 * 1024  # the X-Robots-Tag image: too big to fetch by chance


@dataclass
class Resource:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetSite:
    """The site's files (path -> ``Resource``) and what a crawl of it should find.

    ``truth`` per image path: ``picture`` (which base picture it shows: near-duplicates
    share it), ``largest`` (the candidate ``--variants largest`` fetches), ``alt``,
    ``caption``, ``opt_out`` (True when a signal covers it), ``copy`` (a resized or
    re-encoded copy of its picture)."""

    files: dict[str, Resource] = field(default_factory=dict)
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, body bytes sent)

    def requested(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the site on 127.0.0.1 in a thread; yields its root URL."""
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                resource = site.files.get(path)
                if resource is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    site.requests.append((path, 0))
                    return
                self.send_response(200)
                self.send_header("Content-Type", resource.content_type)
                self.send_header("Content-Length", str(len(resource.body)))
                for name, value in resource.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                sent = 0
                try:
                    for start in range(0, len(resource.body), 65536):
                        self.wfile.write(resource.body[start : start + 65536])
                        sent += len(resource.body[start : start + 65536])
                except OSError:
                    self.close_connection = True
                site.requests.append((path, sent))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()


def picture(seed: int, width: int, height: int | None = None) -> Image.Image:
    """A photo-like picture, different for each ``seed``: a gradient, shapes, blur, grain."""
    rng = random.Random(seed)
    height = height or width * 3 // 4
    base = Image.new("RGB", (64, 48))
    pixels = base.load()
    a = [rng.randrange(256) for _ in range(3)]
    b = [rng.randrange(256) for _ in range(3)]
    for y in range(48):
        for x in range(64):
            t = (x + y) / (64 + 48)
            pixels[x, y] = tuple(int(a[i] * (1 - t) + b[i] * t) for i in range(3))
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randrange(4, 9)):
        box = (
            sorted(rng.randrange(64) for _ in range(2)),
            sorted(rng.randrange(48) for _ in range(2)),
        )
        color = tuple(rng.randrange(256) for _ in range(3))
        shape = (box[0][0], box[1][0], box[0][1] + 4, box[1][1] + 4)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(shape, fill=color)
    image = base.resize((width, height), Image.Resampling.BICUBIC).filter(
        ImageFilter.GaussianBlur(1)
    )
    grain = Image.effect_noise((width, height), 12).convert("RGB")
    return Image.blend(image, grain, 0.06)


def encoded(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def _page(title: str, body: str, lang: str = "en", head: str = "") -> Resource:
    html = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{title}</title>{head}</head><body>{body}</body></html>"
    )
    return Resource(html.encode(), "text/html; charset=utf-8")


def build_dataset_site(galleries: int = 3, per_gallery: int = 4) -> DatasetSite:
    """The site (see the module): ``galleries`` pages of ``per_gallery`` figures each,
    a page of copies, and the opt-out pages."""
    site = DatasetSite()
    files, truth = site.files, site.truth
    links = []
    copies = []
    number = 0
    for gallery in range(galleries):
        figures = []
        for slot in range(per_gallery):
            number += 1
            name = f"/img/p{number}"
            largest = f"{name}-{WIDTHS[-1]}.jpg"
            alt = f"Picture {number}, a study in colour"
            caption = f"Figure {number}: shapes on a gradient"
            for width in WIDTHS:
                path = f"{name}-{width}.jpg"
                files[path] = Resource(encoded(picture(number, width)), "image/jpeg")
                truth[path] = {
                    "picture": number,
                    "largest": largest,
                    "alt": alt,
                    "caption": caption,
                    "opt_out": False,
                    "copy": False,
                }
            srcset = ", ".join(f"{name[1:]}-{w}.jpg {w}w" for w in WIDTHS)
            if slot % 2:  # a <picture>: density descriptors, the 1x fallback in <img>
                markup = (
                    f'<picture><source srcset="{name[1:]}-{WIDTHS[1]}.jpg 1x, '
                    f'{name[1:]}-{WIDTHS[2]}.jpg 2x"><img src="{name[1:]}-{WIDTHS[0]}.jpg" '
                    f'alt="{alt}"></picture>'
                )
            else:
                markup = f'<img src="{name[1:]}-{WIDTHS[1]}.jpg" srcset="{srcset}" alt="{alt}">'
            figures.append(
                f"<p>Notes on picture {number} before it.</p>"
                f"<figure>{markup}<figcaption>{caption}</figcaption></figure>"
            )
            # A copy elsewhere: smaller, re-encoded, a little cropped.
            copy = f"/img/copy{number}.jpg"
            original = picture(number, WIDTHS[-1])
            cut = original.crop((3, 2, original.width - 3, original.height - 2))
            files[copy] = Resource(encoded(cut.resize((300, 220)), quality=55), "image/jpeg")
            truth[copy] = {
                "picture": number,
                "largest": copy,
                "alt": f"copy of picture {number}",
                "caption": None,
                "opt_out": False,
                "copy": True,
            }
            copies.append(f'<img src="{copy[1:]}" alt="copy of picture {number}">')
        path = f"/gallery{gallery}.html"
        files[path] = _page(f"Gallery {gallery}", "".join(figures))
        links.append(path)
    files["/copies.html"] = _page("Copies", "<p>Seen elsewhere.</p>" + "".join(copies), lang="fr")
    links.append("/copies.html")
    _opt_outs(site, links)
    files["/index.html"] = _page(
        "Index", "".join(f'<a href="{link[1:]}">{link}</a> ' for link in links)
    )
    return site


def _opt_outs(site: DatasetSite, links: list[str]) -> None:
    """One page or image per opt-out signal, each with its own pictures."""
    files, truth = site.files, site.truth
    seed = 1000

    def image(path: str, headers: dict[str, str] | None = None, big: bool = False) -> None:
        nonlocal seed
        seed += 1
        body = encoded(picture(seed, 200))
        if big:  # a JPEG with a long tail after its end marker: still a valid image
            body += b"\0" * (BIG_OPT_OUT_BYTES - len(body))
        files[path] = Resource(body, "image/jpeg", headers or {})
        truth[path] = {
            "picture": seed,
            "largest": path,
            "alt": None,
            "caption": None,
            "opt_out": True,
            "copy": False,
        }

    image("/img/noimageai.jpg", {"X-Robots-Tag": "noimageai"}, big=True)
    image("/img/tdm-header.jpg", {"tdm-reservation": "1"})
    image("/img/meta-noai.jpg")
    image("/img/header-page.jpg")
    image("/img/tdm-meta.jpg")
    image("/img/tdmrep.jpg")
    files["/signals.html"] = _page(
        "Signals", '<img src="img/noimageai.jpg"> <img src="img/tdm-header.jpg">'
    )
    files["/meta-noai.html"] = _page(
        "Meta", '<img src="img/meta-noai.jpg">', head='<meta name="robots" content="noai">'
    )
    header_page = _page("Header", '<img src="img/header-page.jpg">')
    header_page.headers["X-Robots-Tag"] = "noai, noimageai"
    files["/header-page.html"] = header_page
    files["/tdm-meta.html"] = _page(
        "TDM meta", '<img src="img/tdm-meta.jpg">', head='<meta name="tdm-reservation" content="1">'
    )
    files["/reserved/page.html"] = _page("Reserved", '<img src="../img/tdmrep.jpg">')
    rules = [
        {"location": "/reserved/*", "tdm-reservation": 1},
        {"location": "/*", "tdm-reservation": 0},
    ]
    files["/.well-known/tdmrep.json"] = Resource(json.dumps(rules).encode(), "application/json")
    links += ["/signals.html", "/meta-noai.html", "/header-page.html", "/tdm-meta.html"]
    links.append("/reserved/page.html")
