"""Each origin's TDMRep file (``/.well-known/tdmrep.json``), read once per origin for
a dataset crawl, and what it says of a page (``web.optout.tdmrep_opt_out``).

Guarantee: one request per origin however many page threads ask at once (the others
wait for it); a file that is missing, unreadable or not TDMRep reserves nothing
(TDMRep: without a declaration, no reservation is expressed). At most
``MAX_ORIGINS`` origins are kept; beyond them the oldest is forgotten (and read
again if asked for again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from crawler.web.optout import (
    MAX_TDMREP_BYTES,
    TdmRule,
    parse_tdmrep,
    tdmrep_opt_out,
    tdmrep_url,
)

__all__ = ["MAX_TDMREP_BYTES", "TdmRepCache"]
MAX_ORIGINS = 10_000

# Reads a TDMRep file: its URL -> (status, body); status 0 when it could not be read.
Fetch = Callable[[str], tuple[int, bytes]]


class TdmRepCache:
    """The TDMRep rules of each origin, fetched on first need (see the module)."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._rules: OrderedDict[str, Sequence[TdmRule]] = OrderedDict()
        self._reading: dict[str, threading.Event] = {}

    def opt_out(self, url: str) -> str | None:
        """The opt-out signal of ``url`` by its origin's file, or None."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return tdmrep_opt_out(self.rules(tdmrep_url(url)), path)

    def rules(self, file_url: str) -> Sequence[TdmRule]:
        while True:
            with self._lock:
                if file_url in self._rules:
                    self._rules.move_to_end(file_url)
                    return self._rules[file_url]
                waiting = self._reading.get(file_url)
                if waiting is None:
                    self._reading[file_url] = threading.Event()
                    break
            waiting.wait()
        rules: Sequence[TdmRule] = ()
        try:
            status, body = self._fetch(file_url)
            if status == 200:
                rules = parse_tdmrep(body)
        finally:  # whatever happens, no thread waits for ever
            with self._lock:
                self._rules[file_url] = rules
                while len(self._rules) > MAX_ORIGINS:
                    self._rules.popitem(last=False)
                self._reading.pop(file_url).set()
        return rules
