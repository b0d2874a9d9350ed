"""Where a page's milliseconds go on the harvester's page path, stage by stage.

    .venv/bin/python scripts/page_profile.py SITE_DIR [--pages N] [--serve]

SITE_DIR is a site from ``python -m crawler.demo.site generate`` (``--page-kb 30-150``
gives real-sized pages; ``bash scripts/bench.sh`` leaves its sites under build/bench/).
Each of the first N pages (default 300) goes through each stage in turn, in this
process, and the table gives the median and mean milliseconds of CPU per page:

- ``fetch``: (with --serve) ``fetch_page`` over HTTP from a private
  ``crawler.demo.site serve`` on 127.0.0.1, parsing left out: requests, urllib3 and our
  checks, on the page thread's CPU clock (the server's own CPU is not counted);
- ``to worker``: the page's bytes pickled and unpickled (what crosses to a parse
  process), and ``from worker``: the extracted content, the same way back;
- ``decode``: finding the page's encoding and decoding it;
- ``kept soup``: BeautifulSoup building the elements extraction reads
  (``extract._elements``, through ``compat.bs4.parse_kept``), and ``visit``: reading
  them (``extract._collect``: URLs resolved, de-duplicated);
- for comparison, not on our path: ``lxml alone`` (lxml's parser, no tree handed to
  Python: what Scrapy's selectors stand on) and ``whole soup`` (BeautifulSoup's whole
  tree, as ``BeautifulSoup(page, "lxml")`` builds it).

Not counted here: the harvester's bookkeeping per page (frontier, task queue, log);
``bash scripts/bench.sh --profile`` shows it within a whole crawl.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lxml.etree
from bs4 import BeautifulSoup

from crawler.config import CrawlConfig
from crawler.web import extract
from crawler.web.pages import close_sessions, fetch_page

ROOT = Path(__file__).resolve().parents[1]


def _cpu_ms(work: Callable[[], object]) -> float:
    began = time.thread_time()
    work()
    return (time.thread_time() - began) * 1000


def _lxml_alone(text: str) -> None:
    parser = lxml.etree.HTMLParser()
    parser.feed(text)
    parser.close()


def _stages(html: bytes, url: str) -> dict[str, float]:
    codec, _ = extract.page_encoding(html)
    text = extract.decode_html(html)
    elements = extract._elements(text)
    query_encoding = extract.url_query_encoding(codec)
    content = extract._collect(elements, url, query_encoding).finish()
    return {
        "to worker": _cpu_ms(lambda: pickle.loads(pickle.dumps((html, url, "text/html")))),
        "decode": _cpu_ms(lambda: extract.decode_html(html)),
        "kept soup": _cpu_ms(lambda: extract._elements(text)),
        "visit": _cpu_ms(lambda: extract._collect(elements, url, query_encoding)),
        "from worker": _cpu_ms(lambda: pickle.loads(pickle.dumps(content))),
        "extract_page": _cpu_ms(lambda: extract.extract_page(html, url)),
        "lxml alone": _cpu_ms(lambda: _lxml_alone(text)),
        "whole soup": _cpu_ms(lambda: BeautifulSoup(text, "lxml")),
    }


def _fetch_ms(url: str, config: CrawlConfig) -> float:
    """CPU ms of fetching a page, without parsing it."""
    return _cpu_ms(lambda: fetch_page(url, 0, config, parse=lambda *_: extract.PageContent()))


class _Server:
    """The demo site's own server on 127.0.0.1, in a child process."""

    def __init__(self, site: Path) -> None:
        self.port_file = Path(tempfile.mkdtemp()) / "port"
        argv = [sys.executable, "-m", "crawler.demo.site", "serve", str(site)]
        self.proc = subprocess.Popen([*argv, "--port-file", str(self.port_file)], cwd=ROOT)
        deadline = time.monotonic() + 30
        while not self.port_file.exists() or not self.port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("page_profile: the demo server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text().strip()}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--serve", action="store_true", help="also time fetching over HTTP")
    args = parser.parse_args(argv)
    truth_file = args.site / "ground_truth.json"
    if not truth_file.exists():
        parser.error(f"{args.site} is not a generated site (no ground_truth.json)")
    paths = json.loads(truth_file.read_text())["pages"][: args.pages]
    times: dict[str, list[float]] = {}
    sizes = []
    server = _Server(args.site) if args.serve else None
    try:
        config = CrawlConfig(allow_private=True, obey_robots=False)
        for path in paths:
            html = (args.site / path.lstrip("/")).read_bytes()
            sizes.append(len(html))
            if server is not None:
                times.setdefault("fetch", []).append(_fetch_ms(server.url + path, config))
            for stage, ms in _stages(html, "http://127.0.0.1:8000" + path).items():
                times.setdefault(stage, []).append(ms)
    finally:
        close_sessions()
        if server is not None:
            server.stop()
    sizes.sort()
    print(
        f"{len(paths)} pages of {args.site}: median {sizes[len(sizes) // 2] / 1000:.1f} KB "
        f"({sizes[0] / 1000:.1f}-{sizes[-1] / 1000:.1f} KB); CPU ms per page"
    )
    ours = ("fetch", "to worker", "decode", "kept soup", "visit", "from worker")
    total = sum(statistics.mean(times[stage]) for stage in ours if stage in times)
    print(f"{'stage':<14} {'median':>7} {'mean':>7} {'share':>6}")
    for stage, values in times.items():
        mean = statistics.mean(values)
        share = f"{100 * mean / total:5.1f}%" if stage in ours else "   (ref)"
        print(f"{stage:<14} {statistics.median(values):7.2f} {mean:7.2f} {share}")
    print(f"{'our path':<14} {'':>7} {total:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
