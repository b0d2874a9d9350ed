"""Each origin's TDMRep file is read once, whoever asks, and what cannot be read
reserves nothing."""

from __future__ import annotations

import json
import threading
import time

from crawler.web.tdmrep import TdmRepCache

RULES = json.dumps([{"location": "/private/*", "tdm-reservation": 1}]).encode()


def test_one_request_per_origin_for_many_threads():
    asked = []

    def fetch(url):
        asked.append(url)
        time.sleep(0.05)  # the others wait for this read
        return 200, RULES

    cache = TdmRepCache(fetch)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.opt_out("http://a.test/private/x")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert answers == ["tdmrep.json: reserved"] * 8
    assert cache.opt_out("http://a.test/public/x") is None
    assert asked == ["http://a.test/.well-known/tdmrep.json"]


def test_missing_or_unreadable_files_reserve_nothing():
    answers = {"http://gone.test": (404, RULES), "http://down.test": (0, b"")}
    cache = TdmRepCache(lambda url: answers[url.removesuffix("/.well-known/tdmrep.json")])
    assert cache.opt_out("http://gone.test/private/x") is None
    assert cache.opt_out("http://down.test/private/x") is None
