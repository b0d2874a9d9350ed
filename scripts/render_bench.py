"""What a rendered page costs: wall time, CPU and browser memory, beside the static path.

    .venv/bin/python scripts/render_bench.py [--renders N] [--concurrency 1 2 4]

Serves the script-made site of the tests (tests/support/script_site.py) on 127.0.0.1,
then for each concurrency renders its pages N times over (every page through
``fetch_page`` with ``--render always``, from that many threads at once, one browser)
and prints, per rendered page: wall seconds (median, 95th percentile), pages/s, CPU
seconds (browser and driver processes, and this process), and the browser's memory (PSS
summed over its processes, sampled every 0.2 s: peak). The static path (``fetch_page``
without a renderer) is measured on the same pages, in the same run, for the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.config import CrawlConfig, RenderConfig
from crawler.render.chromium import ChromiumRenderer, descendant_pids, pss_bytes
from crawler.render.stage import RenderStage
from crawler.web.pages import fetch_page, fetch_resource
from tests.support.script_site import CRAWLABLE, ScriptSite

CRAWL = CrawlConfig(allow_networks=("127.0.0.1/32",), obey_robots=False)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Sampler:
    """The peak PSS of this process's descendants (browser, driver), every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, pss_bytes(descendant_pids(os.getpid())))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(urls: list[str], concurrency: int, stage: RenderStage | None) -> tuple[list[float], float]:
    walls: list[float] = []

    def one(url: str) -> None:
        started = time.monotonic()
        page = fetch_page(url, 0, CRAWL, render=stage)
        if page.error or (stage is not None and page.render_error):
            print(f"  {url}: {page.error or page.render_error}", file=sys.stderr)
        walls.append(time.monotonic() - started)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, urls))
    return walls, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=5, help="times each page is rendered")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    site = ScriptSite()
    urls = [site.url + path for path in CRAWLABLE] * args.renders
    print(f"{len(urls)} pages per run ({len(CRAWLABLE)} pages x {args.renders})")
    static_walls, static_total = run(urls, 1, None)
    print(
        f"static path:   median {statistics.median(static_walls) * 1000:.1f} ms a page, "
        f"{len(urls) / static_total:.0f} pages/s (1 thread)"
    )
    print("concurrency  wall median  wall p95  pages/s  CPU browser/page  CPU here/page  PSS peak")
    for concurrency in args.concurrency:
        settings = RenderConfig(
            render_concurrency=concurrency, render_pages_per_browser=len(urls) + 1
        )
        renderer = ChromiumRenderer(settings, lambda url, ref: fetch_resource(url, CRAWL, ref))
        stage = RenderStage("always", renderer)
        run([site.url + "/plain.html"], 1, stage)  # the browser started, not counted
        sampler = Sampler()
        cpu_before = cpu_seconds(descendant_pids(os.getpid()))
        here_before = time.process_time()
        walls, total = run(urls, concurrency, stage)
        cpu_browser = cpu_seconds(descendant_pids(os.getpid())) - cpu_before
        cpu_here = time.process_time() - here_before
        peak = sampler.stop()
        renderer.close()
        walls.sort()
        p95 = walls[min(len(walls) - 1, int(len(walls) * 0.95))]
        print(
            f"{concurrency:>11}  {statistics.median(walls):>9.2f} s  {p95:>6.2f} s  "
            f"{len(urls) / total:>7.2f}  {cpu_browser / len(urls):>14.3f} s  "
            f"{cpu_here / len(urls):>11.3f} s  {peak / 2**20:>6.0f} MiB"
        )
    site.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
