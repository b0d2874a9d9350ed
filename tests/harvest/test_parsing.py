"""Tests for crawler.harvest.parsing: pages parsed in worker processes, as in the calling thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from crawler.harvest.parsing import PARENT_CHECK_SECONDS, PageParser, extract_pages
from crawler.web.extract import extract_page

PAGE = b"""<html><head><base href="/b/"></head><body>
<img src="a.png" srcset="c.png 2x"><a href="/next.html">next</a>
<div style="background-image: url('bg.jpg')"></div></body></html>"""
URL = "http://example.org/p.html"


def wait_until_warm(parser: PageParser) -> None:
    deadline = time.monotonic() + 60
    while not (parser._warm and parser._warm.done()):
        assert time.monotonic() < deadline, "the parser's workers never started"
        time.sleep(0.05)


def worker_pids(parser: PageParser) -> list[int]:
    return list(parser._pool._processes) if parser._pool else []


def test_workers_parse_as_the_calling_thread_does():
    parser = PageParser(2)
    try:
        # Before the workers are up, the page is parsed in this thread: same result.
        assert parser.parse(PAGE, URL, "text/html") == extract_page(PAGE, URL, "text/html")
        wait_until_warm(parser)
        assert worker_pids(parser)
        assert parser.parse(PAGE, URL, "text/html") == extract_page(PAGE, URL, "text/html")
    finally:
        parser.close()
    assert worker_pids(parser) == []


def test_no_processes_parses_in_the_calling_thread():
    parser = PageParser(0)
    assert parser.parse(PAGE, URL, None) == extract_page(PAGE, URL, None)
    parser.close()


def test_a_killed_worker_costs_no_page():
    parser = PageParser(1)
    try:
        wait_until_warm(parser)
        (pid,) = worker_pids(parser)
        os.kill(pid, signal.SIGKILL)
        # The next parse finds the pool broken (at once, or when it submits), parses in
        # this thread, and a fresh pool takes over.
        for _ in range(3):
            assert parser.parse(PAGE, URL, "text/html") == extract_page(PAGE, URL, "text/html")
        wait_until_warm(parser)
        assert worker_pids(parser) and pid not in worker_pids(parser)
    finally:
        parser.close()


def test_an_error_in_a_worker_reaches_the_caller_as_it_is():
    parser = PageParser(1)
    try:
        wait_until_warm(parser)
        with pytest.raises(TypeError):
            parser.parse("not bytes", URL, "text/html")  # type: ignore[arg-type]
        assert parser.parse(PAGE, URL, "text/html").images  # the pool still works
    finally:
        parser.close()


def test_workers_exit_when_the_harvester_is_killed():
    """kill -9 of the harvester leaves no parser process behind."""
    code = (
        "import time\nfrom crawler.harvest.parsing import PageParser\n"
        "parser = PageParser(2)\nparser._warm.result()\n"
        "print(*parser._pool._processes, flush=True)\ntime.sleep(60)\n"
    )
    harvester = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        workers = [int(pid) for pid in harvester.stdout.readline().split()]  # type: ignore[union-attr]
        assert workers
    finally:
        harvester.kill()
        harvester.wait()
    deadline = time.monotonic() + 10 * PARENT_CHECK_SECONDS
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_harvester_is_gone_before_they_are_up():
    """A harvester that dies while its worker is still starting (a second Ctrl-C right
    after the start) leaves no worker waiting for ever."""
    code = (
        "import os\nfrom crawler.harvest.parsing import PageParser\n"
        "parser = PageParser(1)\n"
        "print(*parser._pool._processes, flush=True)\nos._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    workers = [int(pid) for pid in done.stdout.split()]
    assert workers
    deadline = time.monotonic() + 30  # the worker finishes its imports, then notices
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_pages_waiting_together_go_in_one_batch_and_each_gets_its_own_result():
    # Pages of a few ms each, handed in at the same moment: while the first batches are
    # being parsed, the others wait together.
    filler = b"<p><a href='/x'>x</a> words</p>" * 300
    pages = [PAGE.replace(b"a.png", f"a{n}.png".encode()) + filler for n in range(48)]
    parser = PageParser(1)
    results: dict[int, object] = {}
    start = threading.Barrier(len(pages))
    try:
        wait_until_warm(parser)

        def parse(n: int) -> None:
            start.wait(30)
            results[n] = parser.parse(pages[n], URL, "text/html")

        threads = [threading.Thread(target=parse, args=(n,)) for n in range(len(pages))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        parser.close()
    assert results == {n: extract_page(page, URL, "text/html") for n, page in enumerate(pages)}
    assert parser.pages == len(pages)
    assert parser.batches < parser.pages  # pages that waited together went together


def test_one_bad_page_fails_only_itself():
    options = (False, False)
    good, bad = (
        (PAGE, URL, "text/html", None, options),
        ("not bytes", URL, "text/html", None, options),
    )
    first, second, third = extract_pages([good, bad, good])  # type: ignore[list-item]
    assert first == third == extract_page(PAGE, URL, "text/html")
    assert isinstance(second, TypeError)


def test_selectors_are_matched_in_the_workers_like_pages_are_parsed():
    page = b"<div class='gallery'><ul><li class='tile'>x</li></ul></div><template><p class='t'>"
    selectors = [".gallery .tile", ".nowhere", "li:hover", ".t", "div > ul"]
    parser = PageParser(processes=1)
    try:
        wait_until_warm(parser)
        assert parser.match(page, "text/html", selectors) == [True, False, False, False, True]
        assert parser.pages == 1, "the match went to the worker"
    finally:
        parser.close()
    assert PageParser(processes=0).match(page, None, selectors) == [True, False, False, False, True]


def test_closing_while_pages_wait_leaves_no_caller_waiting():
    """Pages handed in when the harvester stops are still parsed (by their callers)."""
    pages = [PAGE + b"<p><a href='/x'>x</a> words</p>" * (2000 + n) for n in range(6)]
    parser = PageParser(1)
    results: dict[int, object] = {}
    wait_until_warm(parser)

    def parse(n: int) -> None:
        results[n] = parser.parse(pages[n], URL, "text/html")

    threads = [threading.Thread(target=parse, args=(n,)) for n in range(len(pages))]
    for thread in threads:
        thread.start()
    parser.close()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {n: extract_page(page, URL, "text/html") for n, page in enumerate(pages)}
