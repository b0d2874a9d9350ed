"""A site on loopback whose images and links are made by scripts, with its request log.

``SCRIPT_PAGES`` (path -> HTML) covers what static parsing cannot see: a gallery built
from a JavaScript array, a lazy loader without ``data-*`` conventions, a slider that
clones its slides, a menu inserted by a script (and the pages it links to), content
fetched as JSON and put in the DOM, a script that tries to make the browser fetch a
forbidden address, a page whose scripts never stop loading, and a page with scripts
that build nothing (analytics). ``EXPECTED`` says which images and links each page
shows once rendered and which the static parse finds.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler

from PIL import Image

from crawler.demo.server import LocalHTTPServer

HANG_SECONDS = 60.0  # a /hang response waits this long at most (bounded, for the tests)


def png_bytes(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, "PNG")
    return buffer.getvalue()


GALLERY = """<!doctype html><html><head><title>Gallery</title></head><body>
<h1>Gallery</h1><img src="/img/static.png" alt="the one a static parser sees">
<div id="gallery"></div>
<script>
var photos = ["a", "b", "c", "d", "e"];
var box = document.getElementById("gallery");
photos.forEach(function (name) {
  var img = document.createElement("img");
  img.src = "/img/gallery-" + name + ".png";
  box.appendChild(img);
});
</script></body></html>"""

LAZY = """<!doctype html><html><head><title>Lazy</title>
<style>.spacer { height: 3000px; }</style></head><body>
<div class="spacer"></div>
<figure class="photo" data-key="far-1"></figure>
<div class="spacer"></div>
<figure class="photo" data-key="far-2"></figure>
<script>
var seen = new IntersectionObserver(function (entries) {
  entries.forEach(function (entry) {
    if (!entry.isIntersecting) return;
    var img = new Image();
    img.src = "/img/lazy-" + entry.target.getAttribute("data-key") + ".png";
    entry.target.appendChild(img);
    seen.unobserve(entry.target);
  });
});
document.querySelectorAll("figure.photo").forEach(function (f) { seen.observe(f); });
</script></body></html>"""

SLIDER = """<!doctype html><html><head><title>Slider</title>
<style>.slide { background-image: url(/img/slide-bg.png); width: 50px; height: 50px; }</style>
</head><body><div class="slider"></div>
<script>
var slides = [{src: "/img/slide-1.png"}, {src: "/img/slide-2.png"}, {src: "/img/slide-3.png"}];
var track = document.querySelector(".slider");
track.innerHTML = slides.map(function (s) {
  return '<div class="slide"><img src="' + s.src + '"></div>';
}).join("");
track.appendChild(track.firstElementChild.cloneNode(true));
</script></body></html>"""

MENU = """<!doctype html><html><head><title>Menu</title></head><body><nav id="menu"></nav>
<script>
var items = [["/scripted/one.html", "One"], ["/scripted/two.html", "Two"]];
var nav = document.getElementById("menu");
items.forEach(function (item) {
  var a = document.createElement("a");
  a.href = item[0];
  a.textContent = item[1];
  var icon = document.createElement("img");
  icon.src = "/img/icon-" + item[1].toLowerCase() + ".png";
  a.prepend(icon);
  nav.appendChild(a);
});
</script></body></html>"""

FETCHED = """<!doctype html><html><head><title>Fetched</title></head><body><ul id="list"></ul>
<script>
fetch("/api/photos.json").then(function (r) { return r.json(); }).then(function (photos) {
  document.getElementById("list").innerHTML = photos.map(function (p) {
    return "<li><img src='" + p + "'></li>";
  }).join("");
});
</script></body></html>"""

FORBIDDEN = """<!doctype html><html><head><title>Forbidden</title></head><body>
<img id="ok" src="/img/static-2.png">
<script>
var target = "FORBIDDEN_ORIGIN";
fetch(target + "/secret-fetch").catch(function () {});
var img = new Image(); img.src = target + "/secret-image.png"; document.body.appendChild(img);
var s = document.createElement("script"); s.src = target + "/secret-script.js";
document.head.appendChild(s);
try { new WebSocket(target.replace("http", "ws") + "/secret-socket"); } catch (e) {}
navigator.sendBeacon && navigator.sendBeacon(target + "/secret-beacon", "x");
var f = document.createElement("iframe"); f.src = target + "/secret-frame.html";
document.body.appendChild(f);
</script></body></html>"""

NEVER_ENDS = """<!doctype html><html><head><title>Never ends</title>
<script src="/hang/script.js"></script></head><body>
<img src="/img/static-3.png">
<script>
setInterval(function () { fetch("/api/poll?" + Date.now()).catch(function () {}); }, 50);
</script></body></html>"""

BUSY = """<!doctype html><html><head><title>Busy</title></head><body>
<img src="/img/static-4.png"><script>while (true) {}</script></body></html>"""

PLAIN = """<!doctype html><html><head><title>Plain</title>
<script>window.dataLayer = window.dataLayer || []; dataLayer.push({page: "plain"});</script>
</head><body><img src="/img/plain.png"><a href="/gallery.html">Gallery</a></body></html>"""

SUBPAGE = """<!doctype html><html><head><title>{name}</title></head><body>
<img src="/img/{name}.png"></body></html>"""

INDEX = """<!doctype html><html><head><title>Script site</title></head><body>
<a href="/gallery.html">Gallery</a> <a href="/lazy.html">Lazy</a>
<a href="/slider.html">Slider</a> <a href="/menu.html">Menu</a>
<a href="/fetched.html">Fetched</a> <a href="/plain.html">Plain</a>
</body></html>"""

SCRIPT_PAGES = {
    "/index.html": INDEX,
    "/gallery.html": GALLERY,
    "/lazy.html": LAZY,
    "/slider.html": SLIDER,
    "/menu.html": MENU,
    "/fetched.html": FETCHED,
    "/plain.html": PLAIN,
    "/forbidden.html": FORBIDDEN,
    "/never-ends.html": NEVER_ENDS,
    "/busy.html": BUSY,
    "/scripted/one.html": SUBPAGE.format(name="one"),
    "/scripted/two.html": SUBPAGE.format(name="two"),
}
FETCHED_PHOTOS = ["/img/fetched-1.png", "/img/fetched-2.png"]

# What each page of the crawlable part shows once rendered: images, and links to pages.
RENDERED_IMAGES = {
    "/gallery.html": ["/img/static.png"] + [f"/img/gallery-{n}.png" for n in "abcde"],
    "/lazy.html": ["/img/lazy-far-1.png", "/img/lazy-far-2.png"],
    "/slider.html": [f"/img/slide-{n}.png" for n in ("1", "2", "3", "bg")],
    "/menu.html": ["/img/icon-one.png", "/img/icon-two.png"],
    "/fetched.html": FETCHED_PHOTOS,
    "/plain.html": ["/img/plain.png"],
    "/scripted/one.html": ["/img/one.png"],
    "/scripted/two.html": ["/img/two.png"],
}
STATIC_IMAGES = {"/img/static.png", "/img/plain.png"}


class ScriptSite(LocalHTTPServer):
    """Serves ``SCRIPT_PAGES`` (``FORBIDDEN_ORIGIN`` replaced by ``forbidden``), PNGs
    under /img/, and a /hang/ path that answers after ``HANG_SECONDS``; ``hits`` logs
    every request path."""

    def __init__(self, host: str = "127.0.0.1", forbidden: str = "") -> None:
        super().__init__((host, 0), _Handler)
        self.forbidden = forbidden
        self.hits: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close(self) -> None:
        self._stop.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    server: ScriptSite

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.hits.append(self.path)
        if path.startswith("/hang/"):
            self.server._stop.wait(HANG_SECONDS)
            self._send(200, b"", "application/javascript")
        elif path in SCRIPT_PAGES:
            body = SCRIPT_PAGES[path].replace("FORBIDDEN_ORIGIN", self.server.forbidden)
            self._send(200, body.encode(), "text/html; charset=utf-8")
        elif path == "/api/photos.json":
            self._send(200, json.dumps(FETCHED_PHOTOS).encode(), "application/json")
        elif path == "/api/poll":
            self._send(200, b"{}", "application/json")
        elif path.startswith("/img/") and path.endswith(".png"):
            self._send(200, png_bytes("#%06x" % (hash(path) & 0xFFFFFF)), "image/png")
        elif path == "/robots.txt":
            self._send(404, b"", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (ConnectionError, TimeoutError):
            pass


# The pages of the site a crawl can walk from /index.html (not the forbidden-address
# and never-finishing ones, which are for the renderer's own tests).
CRAWLABLE = ("/index.html", *RENDERED_IMAGES)


def write_script_site(root) -> dict[str, bytes]:
    """Write the crawlable pages, their images and the JSON they fetch under ``root``
    (a ``pathlib.Path``), for a file server; returns each image's path and bytes."""
    images = {}
    for path in CRAWLABLE:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SCRIPT_PAGES[path], encoding="utf-8")
    for path in {image for found in RENDERED_IMAGES.values() for image in found}:
        images[path] = png_bytes("#%06x" % (sum(map(ord, path)) * 2654435761 & 0xFFFFFF))
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(images[path])
    (root / "api").mkdir(exist_ok=True)
    (root / "api" / "photos.json").write_text(json.dumps(FETCHED_PHOTOS))
    return images
