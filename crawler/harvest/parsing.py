"""Page parsing in worker processes, so that the harvester's queue service keeps the GIL.

BeautifulSoup parses a page in pure Python. Done in the harvester's page threads it held
the GIL from the threads answering the downloaders' leases and results: while pages
were being parsed the whole cluster stored images more slowly (docs/design-notes.md).
Worker processes parse instead; a page thread sends the bytes and waits.

Until the workers have started (importing BeautifulSoup and lxml takes a while) pages
are parsed in the calling thread, so the first page is not delayed;
the same if the pool breaks (a worker killed), after which a fresh pool is started.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from crawler.web.extract import PageContent, extract_page

PARENT_CHECK_SECONDS = 1.0


def _start_worker(parent: int) -> None:
    # Ctrl-C reaches the whole process group: the harvester decides how to stop, and
    # shuts the pool down itself; a worker must not die with a traceback first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waiting for work never notices its harvester killed with -9: it would
    # wait for ever. It checks once a second that its parent is still the one that
    # started it (passed in: the harvester may be gone before this worker is up).
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _ready() -> bool:
    return True


class PageParser:
    """``parse(html, url, content_type)``: ``extract_page``, in ``processes`` workers
    (0: in the calling thread)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future[bool] | None = None
        self._closed = False
        if processes:
            self._start()

    def _start(self) -> None:
        # spawn, not fork: the harvester has threads (and SQLite) by the time it parses.
        self._pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        # Importing extract_page's module in a worker is what takes the time.
        self._warm = self._pool.submit(_ready)

    def parse(self, html: bytes, url: str, content_type: str | None) -> PageContent:
        with self._lock:
            pool, warm = self._pool, self._warm
        if pool is None or warm is None or not warm.done():
            return extract_page(html, url, content_type)
        try:
            future = pool.submit(extract_page, html, url, content_type)
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down by close()
            self._restart(pool)
            return extract_page(html, url, content_type)
        try:
            return future.result()  # extract_page's own exceptions come through as they are
        except BrokenProcessPool:  # a worker died (the OOM killer, a crash in lxml)
            self._restart(pool)
            return extract_page(html, url, content_type)

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken or self._closed:
                return
            broken.shutdown(wait=False, cancel_futures=True)
            self._start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
