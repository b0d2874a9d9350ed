"""Baseline: the crawl a Python programmer would write with gevent and BeautifulSoup.

One process: gevent's monkey patching, one requests Session (a connection pool as large
as the concurrency), a Pool of N greenlets taking work from one FIFO queue. The crawl is
breadth-first from the start URL within its host:port, to --max-depth; every page is
parsed into a full tree with ``BeautifulSoup(body, "lxml")`` (no SoupStrainer: the cost
of a real parse per page is what this peer shows). Images are the usual places: <img
src>, lazy data-src, srcset of <img> and <source> (the URL of each candidate), and <a
href> ending in an image extension; other in-host links are pages. Each image URL is
fetched once, as soon as a greenlet is free, streamed to a temp file while hashing and
renamed to <sha256>.<ext>, as gevent_list.py does. No politeness, robots.txt or retries.

    python gevent_crawl.py START_URL OUT [--concurrency 128] [--max-depth 10]
Prints one summary line (pages, images stored) and exits 0.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from urllib.parse import urldefrag, urljoin, urlsplit  # noqa: E402

import requests  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.queue import JoinableQueue  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".svg")


class Crawl:
    def __init__(self, start: str, out: str, concurrency: int, max_depth: int) -> None:
        self.host = urlsplit(start).netloc.lower()
        self.out = out
        self.max_depth = max_depth
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.queue: JoinableQueue = JoinableQueue()
        self.seen_pages = {start}
        self.seen_images: set[str] = set()
        self.names = itertools.count()
        self.pages = self.page_errors = self.stored = self.failed = 0
        self.queue.put((self.page, start, 0))

    def worker(self) -> None:
        while True:
            task, url, depth = self.queue.get()
            try:
                task(url, depth)
            except Exception:  # a bug in one task must not stop the crawl silently
                traceback.print_exc()
            finally:
                self.queue.task_done()

    def page(self, url: str, depth: int) -> None:
        try:
            response = self.session.get(url, timeout=30)
        except requests.RequestException:
            self.page_errors += 1
            return
        if response.status_code != 200 or "html" not in response.headers.get("Content-Type", ""):
            self.page_errors += response.status_code != 200
            return
        self.pages += 1
        soup = BeautifulSoup(response.content, "lxml")
        base = response.url
        tag = soup.find("base", href=True)
        if tag is not None:
            base = urljoin(base, tag["href"])
        found = []
        for tag in soup.find_all("img"):
            found += [tag.get("src"), tag.get("data-src")]
        for tag in soup.find_all(["img", "source"], srcset=True):
            found += [part.split()[0] for part in tag["srcset"].split(",") if part.strip()]
        links = []
        for tag in soup.find_all("a", href=True):
            if urlsplit(tag["href"]).path.lower().endswith(IMAGE_EXTENSIONS):
                found.append(tag["href"])
            else:
                links.append(tag["href"])
        for src in found:
            if not src or src.strip().startswith("data:"):
                continue
            image = urldefrag(urljoin(base, src.strip())).url
            if image.startswith(("http://", "https://")) and image not in self.seen_images:
                self.seen_images.add(image)
                self.queue.put((self.image, image, depth))
        if depth >= self.max_depth:
            return
        for href in links:
            link = urldefrag(urljoin(base, href.strip())).url
            parts = urlsplit(link)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != self.host:
                continue
            if link not in self.seen_pages:
                self.seen_pages.add(link)
                self.queue.put((self.page, link, depth + 1))

    def image(self, url: str, depth: int) -> None:
        tmp = os.path.join(self.out, f".part-{next(self.names)}")
        try:
            with self.session.get(url, stream=True, timeout=30) as response:
                if response.status_code != 200:
                    self.failed += 1
                    return
                digest = hashlib.sha256()
                with open(tmp, "wb") as handle:
                    for chunk in response.iter_content(65536):
                        digest.update(chunk)
                        handle.write(chunk)
            ext = os.path.splitext(urlsplit(url).path)[1][:8]
            os.replace(tmp, os.path.join(self.out, digest.hexdigest() + ext))
            self.stored += 1
        except (requests.RequestException, OSError):
            self.failed += 1
            if os.path.exists(tmp):
                os.unlink(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--max-depth", type=int, default=10)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    crawl = Crawl(args.start, args.out, args.concurrency, args.max_depth)
    pool = Pool(args.concurrency)
    for _ in range(args.concurrency):
        pool.spawn(crawl.worker)
    crawl.queue.join()
    pool.kill()
    print(
        f"gevent-crawl: {crawl.pages} pages ({crawl.page_errors} failed), "
        f"{crawl.stored} images stored ({crawl.failed} failed) of {len(crawl.seen_images)} URLs",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
