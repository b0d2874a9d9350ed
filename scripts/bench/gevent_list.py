"""Baseline: the simplest fast list downloader a Python programmer would write.

gevent + one requests Session per process, a Pool of N greenlets, each URL streamed to a
temp file while hashing and renamed to <sha256>.<ext>. No crawling, no politeness, no
retries, no robots.txt: the floor our crawler's per-image overhead is compared with.

    python gevent_list.py URLS_FILE OUT [--processes 2] [--concurrency 128]
The parent splits the list and runs one child per process (to use every core).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import requests  # noqa: E402
from gevent.pool import Pool  # noqa: E402

_names = itertools.count()


def fetch(session: requests.Session, url: str, out: str) -> bool:
    tmp = os.path.join(out, f".part-{os.getpid()}-{next(_names)}")
    try:
        with session.get(url, stream=True, timeout=30) as response:
            if response.status_code != 200:
                return False
            digest = hashlib.sha256()
            with open(tmp, "wb") as handle:
                for chunk in response.iter_content(65536):
                    digest.update(chunk)
                    handle.write(chunk)
        ext = os.path.splitext(url.split("?", 1)[0])[1][:8]
        os.replace(tmp, os.path.join(out, digest.hexdigest() + ext))
        return True
    except (requests.RequestException, OSError):
        if os.path.exists(tmp):
            os.unlink(tmp)
        return False


def worker(urls: list[str], out: str, concurrency: int) -> int:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    results = Pool(concurrency).imap_unordered(lambda url: fetch(session, url, out), urls)
    stored = sum(results)
    print(f"pid {os.getpid()}: stored {stored} of {len(urls)}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls")
    parser.add_argument("out")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--part", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with open(args.urls) as handle:
        urls = [line.strip() for line in handle if line.strip()]
    os.makedirs(args.out, exist_ok=True)
    if args.part >= 0:
        return worker(urls[args.part :: args.processes], args.out, args.concurrency)
    children = [
        subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--part", str(part)])
        for part in range(args.processes)
    ]
    return max(child.wait() for child in children)


if __name__ == "__main__":
    sys.exit(main())
