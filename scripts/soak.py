"""The long soak (run by hand, not in CI): a generated site of N small images, downloader
nodes killed with -9 at random every few seconds and started again, the harvester
killed with -9 once and started again on its state.

Prints, at the end: tasks lost (must be 0), images fetched twice, the harvester's RSS
over time, and seconds per 10,000 images stored near the start, the middle and the end
(the cost per image must stay flat: nothing on the hot path that grows with the crawl).
Exits 1 if a task was lost or a stored file is wrong.

    .venv/bin/python scripts/soak.py [--images 1000000] [--nodes 3] [--kill-every 4]

The site is made on the fly by a server in this script: /index.html links to pages of
100 images each; every image is a distinct valid PNG of about 100 bytes, made from its
number, so nothing is written before the crawl. The server counts every GET.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import multiprocessing
import os
import random
import secrets
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_PAGE = 100


def png(number: int) -> bytes:
    """A distinct 4x4 RGB PNG for ``number``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack("!I", len(data)) + body + struct.pack("!I", zlib.crc32(body))

    seed = hashlib.sha256(number.to_bytes(8, "big")).digest()
    rows = b"".join(b"\x00" + seed[row * 12 : row * 12 + 12] for row in range(2)) * 2
    header = struct.pack("!IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def serve_site(images: int, port_queue, stats_path: str) -> None:
    """The soak site, until SIGTERM; GET counts per image go to ``stats_path`` then."""
    gets = bytearray(images)  # saturates at 255
    pages = (images + PER_PAGE - 1) // PER_PAGE
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            if path == "/index.html" or path == "/":
                links = "".join(f'<a href="/p/{n}.html">{n}</a>\n' for n in range(pages))
                self._send("text/html", f"<html><body>{links}</body></html>".encode())
            elif path.startswith("/p/") and path.endswith(".html"):
                page = int(path[3:-5])
                first = page * PER_PAGE
                tags = "".join(
                    f'<img src="/i/{n}.png">\n' for n in range(first, min(first + PER_PAGE, images))
                )
                self._send("text/html", f"<html><body>{tags}</body></html>".encode())
            elif path.startswith("/i/") and path.endswith(".png"):
                number = int(path[3:-4])
                with lock:
                    gets[number] = min(gets[number] + 1, 255)
                self._send("image/png", png(number))
            else:
                self.send_error(404)

        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed node's socket
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)

    def stop(*_args) -> None:
        Path(stats_path).write_bytes(bytes(gets))
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def last_stored(log: Path) -> int:
    """``stored=`` of the last totals line of the progress log, read from its last 4 MB
    (a totals line comes every 2 s, after up to some 10,000 lines of events)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4 * 1024 * 1024))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return 0
    for line in reversed(tail.splitlines()):
        if " event=totals " in line or " event=crawl_finished " in line:
            for field in line.split():
                if field.startswith("stored="):
                    return int(field[7:])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    python = str(ROOT / ".venv" / "bin" / "python")
    work = Path(tempfile.mkdtemp(prefix="crawler-soak-"))
    out, logs = work / "out", work / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "CRAWLER_AUTHKEY": secrets.token_urlsafe(24),
        "CRAWLER_HOST_CONCURRENCY": "64",
        "CRAWLER_LEASE_SECONDS": "20",
        "CRAWLER_NODE_TIMEOUT": "5",
    }
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    stats_path = work / "gets.bin"
    site = context.Process(target=serve_site, args=(args.images, port_queue, str(stats_path)))
    site.start()
    port = port_queue.get(timeout=60)
    with socket_free_port() as listen_port:
        listen = f"127.0.0.1:{listen_port}"
    harvest = [
        python,
        "-m",
        "crawler",
        "harvest",
        f"http://127.0.0.1:{port}/index.html",
        "--listen",
        listen,
        "--out",
        str(out),
        "--allow-private",
        "--max-pages",
        "0",
        "--max-images",
        "0",
        "--max-depth",
        "1",
    ]

    def start(name: str, command: list[str]) -> subprocess.Popen:
        log = (logs / f"{name}.err").open("ab")
        return subprocess.Popen(
            command, env={**env, "CRAWLER_NODE_ID": name}, stdout=subprocess.DEVNULL, stderr=log
        )

    def node(number: int) -> subprocess.Popen:
        return start(
            f"soak-{number}",
            [
                python,
                "-m",
                "crawler",
                "download",
                "--connect",
                listen,
                "--out",
                str(out),
                "--processes",
                "1",
                "--concurrency",
                str(args.concurrency),
                "--allow-private",
            ],
        )

    started = time.monotonic()
    harvester = start("harvester", harvest)
    nodes = {n: node(n) for n in range(args.nodes)}
    next_number = args.nodes
    kills = harvester_kills = 0
    next_kill = started + rng.expovariate(1 / args.kill_every)
    progress: list[tuple[float, int]] = []  # (seconds, stored), one a second
    rss: list[tuple[float, float]] = []
    last_sample = 0.0
    log = out / "progress.log"
    try:
        while harvester.poll() is None:
            now = time.monotonic()
            if now - last_sample >= 1.0:
                last_sample = now
                stored = last_stored(log)
                if stored:
                    progress.append((now - started, stored))
                rss.append((now - started, rss_mb(harvester.pid)))
                if harvester_kills == 0 and stored >= args.images * 0.4:
                    harvester.send_signal(signal.SIGKILL)
                    harvester.wait()
                    harvester_kills += 1
                    print(
                        f"[{now - started:.0f} s] harvester killed at {stored} stored; "
                        "started again on its state",
                        flush=True,
                    )
                    harvester = start("harvester", harvest)
            if now >= next_kill:
                victim = rng.choice(sorted(nodes))
                nodes.pop(victim).send_signal(signal.SIGKILL)
                kills += 1
                nodes[next_number] = node(next_number)
                next_number += 1
                next_kill = now + rng.expovariate(1 / args.kill_every)
            time.sleep(0.1)
        code = harvester.wait()
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in nodes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        site.terminate()
        site.join(timeout=30)
    elapsed = time.monotonic() - started
    return report(args, work, out, stats_path, code, elapsed, kills, progress, rss)


class socket_free_port:
    """A free TCP port on 127.0.0.1 (closed again at once)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def seconds_per_10k(
    progress: list[tuple[float, int]], low: int, high: int, span: int
) -> float | None:
    """The median, over the windows of ``span`` images stored between ``low`` and
    ``high``, of the seconds each took, per 10,000 images. A median: a window that
    holds the harvester's restart (no totals, then a jump) does not decide it."""

    def first_time(count: int) -> float | None:
        return next((t for t, stored in progress if stored >= count), None)

    seconds = []
    for start in range(low, high - span + 1, span):
        began, ended = first_time(start), first_time(start + span)
        if began is not None and ended is not None:
            seconds.append((ended - began) * 10_000 / span)
    return statistics.median(seconds) if seconds else None


def report(args, work, out, stats_path, code, elapsed, kills, progress, rss) -> int:
    records = [json.loads(line) for line in (out / "manifest.jsonl").open()]
    urls = {r["url"] for r in records}
    stored = [r for r in records if r["outcome"] == "stored"]
    lost = args.images - len(urls)
    wrong = 0
    for record in random.Random(0).sample(stored, min(2000, len(stored))):
        path = out / record["path"]
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != record["sha256"]:
            wrong += 1
    gets = stats_path.read_bytes() if stats_path.exists() else b""
    twice = sum(1 for count in gets if count >= 2)
    print(
        f"soak: {args.images} images, {args.nodes} nodes x {args.concurrency}, "
        f"harvester exit {code}, {elapsed:.0f} s ({args.images / elapsed:,.0f} images/s)"
    )
    print(f"  downloaders killed with -9: {kills}; harvester killed with -9: 1")
    print(
        f"  tasks lost: {lost} (manifest rows {len(records)}, stored {len(stored)}, "
        f"failed {len(records) - len(stored)})"
    )
    print(
        f"  images fetched twice: {twice} ({twice / args.images:.2%}); "
        f"of 2000 stored files checked, wrong or missing: {wrong}"
    )
    samples = rss[:: max(1, len(rss) // 10)]
    print("  harvester RSS (s: MB): " + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in samples))
    span = min(10_000, args.images // 50)
    for label, fraction in (("start", 0.1), ("middle", 0.5), ("end", 0.85)):
        low, high = int(args.images * (fraction - 0.08)), int(args.images * (fraction + 0.08))
        seconds = seconds_per_10k(progress, low, high, span)
        shown = f"{seconds:.1f} s" if seconds is not None else "n/a"
        print(
            f"  seconds per 10,000 images at the {label} ({low:,}-{high:,} stored, median "
            f"of {span:,}-image windows): {shown}"
        )
    print(f"  (work folder: {work})")
    return 0 if lost == 0 and wrong == 0 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
