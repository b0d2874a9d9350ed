"""Page parsing in worker processes, so that the harvester's queue service keeps the GIL.

BeautifulSoup parses a page in pure Python. Done in the harvester's page threads it held
the GIL from the threads answering the downloaders' leases and results: while pages
were being parsed the whole cluster stored images more slowly (docs/design-notes.md).
Worker processes parse instead; a page thread hands the bytes in and waits, and the
pages go to the workers in batches (``PageParser``).

Until the workers have started (importing BeautifulSoup and lxml takes a while) pages
are parsed in the calling thread, so the first page is not delayed;
the same if the pool breaks (a worker killed), after which a fresh pool is started.
Matching style-sheet selectors on a whole page (``match``) goes the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from crawler.web.extract import PageContent, extract_page, match_page_selectors

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


# Pages per batch at most, and their bytes: a batch is one message each way.
MAX_BATCH_PAGES = 32
MAX_BATCH_BYTES = 8 * 1024 * 1024


# A page for a worker: (html, url, content type, None, (describe, largest)) to extract
# it, or (html, url, content type, selectors, _) to match those selectors on it.
Job = tuple[bytes, str, str | None, list[str] | None, tuple[bool, bool]]
Result = PageContent | list[bool]


def extract_pages(pages: list[Job]) -> list[Result | Exception]:
    """``extract_page`` (or ``match_page_selectors``) of each page, in a worker: a
    page's own exception is its result (it goes back to that page's caller), so one
    hostile page fails no other."""
    results: list[Result | Exception] = []
    for job in pages:
        try:
            results.append(_run(job))
        except Exception as exc:
            results.append(exc)
    return results


def _run(job: Job) -> Result:
    html, url, content_type, selectors, (describe, largest) = job
    if selectors is None:
        return extract_page(html, url, content_type, describe, largest)
    return match_page_selectors(html, content_type, selectors)


class _Waiting:
    """A page handed to the parser, until its batch comes back."""

    __slots__ = ("done", "page", "result", "size")

    def __init__(self, page: Job) -> None:
        self.page = page
        self.size = len(page[0])
        self.done = threading.Event()
        self.result: Result | BaseException | None = None


class PageParser:
    """``parse(html, url, content_type)``: ``extract_page`` (with ``describe`` and
    ``largest``), in ``processes`` workers (0: in the calling thread);
    ``match(html, content_type, selectors)`` likewise.

    Pages go to the workers in batches, one message each way per batch: the page
    threads hand their pages in and wait; a sender thread keeps one batch in the pool
    per worker and one more queued, each made of every page waiting then (at most
    ``MAX_BATCH_PAGES`` pages and ``MAX_BATCH_BYTES``). A lightly loaded crawl sends
    each page at once; a busy one sends fewer, bigger messages. A batch whose worker
    died, or that could not be sent or returned, is parsed by its callers themselves.
    """

    def __init__(self, processes: int, describe: bool = False, largest: bool = False) -> None:
        self.processes = processes
        self.options = (describe, largest)  # extract_page's, for every page
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future[bool] | None = None
        self._closed = False
        self._waiting: list[_Waiting] = []
        self._sent = 0  # batches in the pool
        self.batches = self.pages = 0  # sent to the workers so far
        self._changed = threading.Condition(self._lock)
        if processes:
            self._start()
            threading.Thread(target=self._send_batches, name="page-batches", daemon=True).start()

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
        result = self._do((html, url, content_type, None, self.options))
        assert isinstance(result, PageContent)
        return result

    def match(self, html: bytes, content_type: str | None, selectors: list[str]) -> list[bool]:
        """``match_page_selectors``, in the workers as ``parse``."""
        result = self._do((html, "", content_type, list(selectors), self.options))
        assert isinstance(result, list)
        return result

    def _do(self, job: Job) -> Result:
        with self._lock:
            warm = self._warm
            if self._pool is None or warm is None or not warm.done():
                waiting = None
            else:
                waiting = _Waiting(job)
                self._waiting.append(waiting)
                self._changed.notify()
        if waiting is None:
            return _run(job)
        waiting.done.wait()
        result = waiting.result
        if isinstance(result, _Unparsed):  # the pool could not do it: parse it here
            return _run(job)
        if isinstance(result, BaseException):
            raise result  # extract_page's own exceptions come through as they are
        assert result is not None
        return result

    def _send_batches(self) -> None:
        """The sender thread: batches out while a worker has room, until closed."""
        while True:
            with self._lock:
                while not self._closed and (
                    not self._waiting or self._sent > self.processes or self._pool is None
                ):
                    self._changed.wait()
                if self._closed:
                    batch, self._waiting = self._waiting, []
                    _resolve(batch, [_Unparsed()] * len(batch))
                    return
                batch = self._take_batch()
                pool = self._pool
                self._sent += 1
                self.batches += 1
                self.pages += len(batch)
            try:
                sent = pool.submit(extract_pages, [waiting.page for waiting in batch])
            except Exception:  # broken, or shut down by close(): its callers parse it
                self._returned(batch, pool, None)
                continue
            sent.add_done_callback(lambda done, b=batch, p=pool: self._returned(b, p, done))

    def _take_batch(self) -> list[_Waiting]:
        """The first waiting pages, within the batch limits (always at least one)."""
        size = 0
        for count, waiting in enumerate(self._waiting):
            size += waiting.size
            if count == MAX_BATCH_PAGES or (count and size > MAX_BATCH_BYTES):
                break
        else:
            count = len(self._waiting)
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch

    def _returned(
        self,
        batch: list[_Waiting],
        pool: ProcessPoolExecutor,
        done: Future[list[Result | Exception]] | None,
    ) -> None:
        """A batch is back (``done``), or could not be sent (None): wake its callers."""
        results: list[Result | BaseException] = [_Unparsed()] * len(batch)
        broken = done is None
        if done is not None:
            try:
                results = list(done.result())
            except BrokenProcessPool:  # a worker died (the OOM killer, a crash in lxml)
                broken = True
            except Exception:  # a result that could not be returned (pickled), cancelled
                pass
        with self._lock:
            self._sent -= 1
            self._changed.notify()
        try:
            if broken:
                self._restart(pool)  # (may fail: no process can be started now)
        finally:
            _resolve(batch, results)  # whatever happens, no caller waits for ever

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
            self._changed.notify()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class _Unparsed(Exception):
    """A page the workers could not parse (pool broken or closed): its caller parses it."""


def _resolve(batch: list[_Waiting], results: list[Result | BaseException]) -> None:
    for waiting, result in zip(batch, results, strict=True):
        waiting.result = result
        waiting.done.set()
