"""A private nginx serving the generated site on 127.0.0.1, one instance per run.

nginx rather than the demo site's Python server: the server must not be the bottleneck,
or every tool would measure the same thing. Each run gets its own instance and access
log (so duplicate GETs are counted per run), its own prefix and temp folders (nothing
under /etc or /var is used; the system service is never touched).

Added latency: the echo module's ``echo_sleep`` is a timer, not a blocking sleep, so
thousands of delayed responses wait in parallel. ``echo_sleep`` alone would answer with
an empty body; ``echo_exec @file`` then hands the request to a named location whose
only handler is the static one, which serves the file with its own Content-Type,
Content-Length and sendfile. The delay applies to image responses (under /img/) only,
or with ``every_response`` to every response (pages, images, robots.txt, 404s alike: a
slow server). `check_delay` verifies this on a real image, and on a page when pages are
delayed too.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

CHECK_QUERY = "?bench-check"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
MIME = {
    "image/jpeg": "jpg jpeg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "text/html": "html",
    "text/plain": "txt",
    "application/json": "json",
}


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (we never pick one ourselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_binary() -> str:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def user_line(site: Path) -> str:
    """Run as root, nginx's workers would switch to `nobody`, who may not be able to read
    a site under, say, /root; so they run as the owner of the files they serve (the
    user who generated them). Without root, nginx ignores the directive."""
    if os.geteuid() != 0:
        return ""
    info = site.stat()
    return f"user {pwd.getpwuid(info.st_uid).pw_name} {grp.getgrgid(info.st_gid).gr_name};\n"


def config_text(
    prefix: Path, site: Path, port: int, delay_ms: int, every_response: bool = False
) -> str:
    types = "\n".join(f"        {mime} {exts};" for mime, exts in MIME.items())
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    if delay_ms:
        # "/" matches every request (the longest prefix wins, and there is no other).
        where = "/" if every_response else "/img/"
        delayed = (
            f"        location {where} {{ echo_sleep {delay_ms / 1000:.3f}; echo_exec @file; }}\n"
            "        location @file { }\n"
        )
    else:
        delayed = ""
    return f"""\
load_module {ECHO_MODULE};
{user_line(site)}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 8192; }}
http {{
    types {{
{types}
    }}
    default_type application/octet-stream;
    log_format bench '$status $request_method $request_uri $body_bytes_sent $msec';
    access_log {prefix}/access.log bench buffer=256k;
    log_not_found off;
{temp}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {site};
{delayed}    }}
}}
"""


class Nginx:
    """nginx in the foreground (``daemon off``) as our child, so we can always stop it."""

    def __init__(
        self, prefix: Path, site: Path, delay_ms: int, every_response: bool = False
    ) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        text = config_text(prefix, site.resolve(), self.port, delay_ms, every_response)
        self.conf.write_text(text)
        self.access_log = prefix / "access.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [nginx_binary(), "-c", str(self.conf), "-p", f"{self.prefix}/", "-g", "daemon off;"]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx rejects its config {self.conf}: {check.stderr.strip()}")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start, see {self.prefix}/error.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening within 10 s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (call before `stop`)."""
        if self.proc is None:
            return 0.0
        try:
            master = psutil.Process(self.proc.pid)
            procs = [master, *master.children(recursive=True)]
            return sum(sum(p.cpu_times()[:2]) for p in procs)
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        """Graceful stop (SIGQUIT), which also flushes the buffered access log."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(3)  # SIGQUIT
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_delay(
    url: str, path: str, sha256: str, delay_ms: int, content_type: str = "image/"
) -> dict:
    """Fetch one file: right bytes, the Content-Type expected, and at least the delay.

    The query string marks the request, so that `read_access_log` leaves it out.
    """
    started = time.monotonic()
    with urllib.request.urlopen(url.rstrip("/") + path + CHECK_QUERY, timeout=10) as response:
        body = response.read()
        ctype = response.headers.get("Content-Type", "")
    took = time.monotonic() - started
    problems = []
    if hashlib.sha256(body).hexdigest() != sha256:
        problems.append("wrong bytes")
    if not ctype.startswith(content_type):
        problems.append(f"Content-Type {ctype!r}")
    if took < delay_ms / 1000 * 0.9:
        problems.append(f"answered in {took * 1000:.0f} ms, expected >= {delay_ms} ms")
    if problems:
        raise RuntimeError(f"nginx check of {path} failed: {', '.join(problems)}")
    return {"path": path, "content_type": ctype, "ms": round(took * 1000, 1)}


@dataclass
class Requests:
    """Image requests in one access log, and how many GETs of anything else (pages)."""

    image_gets: int
    distinct_image_paths: int
    duplicates: int
    broken_gets: int
    statuses: dict[str, int]
    other_methods: int
    pages: int  # GETs outside /img/: the pages, and robots.txt or a text file if fetched
    distinct_pages: int
    first_image_at: float | None  # epoch seconds nginx finished the first image response
    last_image_at: float | None


def read_access_log(path: Path, broken: set[str]) -> Requests:
    """Count image GETs (any path under /img/, including the broken ones) in the log.

    duplicates = image GETs - distinct image paths, so a second GET of an image, or a
    retry of a deliberately broken one, counts; the first GET of each path does not.
    """
    per_path: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    page_paths: set[str] = set()
    other = pages = broken_gets = 0
    first = last = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(" ")
        if len(parts) < 5:
            continue
        status, method, uri, when = parts[0], parts[1], parts[2], float(parts[4])
        if uri.endswith(CHECK_QUERY):
            continue
        target = uri.split("?", 1)[0]
        if not target.startswith("/img/"):
            if method == "GET":
                pages += 1
                page_paths.add(target)
            continue
        if method != "GET":
            other += 1
            continue
        per_path[target] += 1
        first = when if first is None else min(first, when)
        last = when if last is None else max(last, when)
        statuses[status] += 1
        broken_gets += target in broken
    total = sum(per_path.values())
    return Requests(
        image_gets=total,
        distinct_image_paths=len(per_path),
        duplicates=total - len(per_path),
        broken_gets=broken_gets,
        statuses=dict(statuses),
        other_methods=other,
        pages=pages,
        distinct_pages=len(page_paths),
        first_image_at=first,
        last_image_at=last,
    )
