"""Kill this process as ``kill -9`` would, at a named point of the harvester, to prove
that a crawl recovers from a crash exactly there (between two writes that must agree).

Python imports this module at start-up when its folder is on ``PYTHONPATH`` (see
``crash_at`` beside it). ``CRAWLERTEST_CRASH_AT=NAME:N`` kills the process the N-th
time (N defaults to 1) the harvester's loop that records final tasks passes NAME:

* ``before_manifest``: a batch was taken from the broker (``Broker.take_updates``); its
  tasks are final in the database only, their manifest lines are not written;
* ``after_manifest``: the lines are written and flushed, the broker's watermark is not
  (on entering ``Broker.mark_recorded``);
* ``after_state``: the watermark is written too (on leaving ``Broker.mark_recorded``).

Only calls made from ``Harvester._record_updates`` count (not the resume's own
``mark_recorded``). The methods are wrapped once ``crawler.harvest.harvester`` has been
imported, so every other module is imported when and as it always is. (Not a
``CRAWLER_`` variable: the config refuses the ones it does not know.)
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import signal
import sys
from types import ModuleType
from typing import Any

HARVESTER_MODULE = "crawler.harvest.harvester"

_NAME, _, _COUNT = os.environ.get("CRAWLERTEST_CRASH_AT", "").partition(":")
_left = int(_COUNT) if _COUNT.isdigit() else 1
_recording = False  # inside Harvester._record_updates (one thread runs it)


def _passed(point: str) -> None:
    global _left
    if not _recording or point != _NAME:
        return
    _left -= 1
    if _left <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


def _wrap_harvester(module: ModuleType) -> None:
    harvester, broker = module.Harvester, module.Broker
    record_updates = harvester._record_updates
    take_updates = broker.take_updates
    mark_recorded = broker.mark_recorded

    @functools.wraps(record_updates)
    def _record_updates(self: Any) -> None:
        global _recording
        _recording = True
        try:
            record_updates(self)
        finally:
            _recording = False

    @functools.wraps(take_updates)
    def _take_updates(self: Any, *args: Any, **kwargs: Any) -> Any:
        updates = take_updates(self, *args, **kwargs)
        _passed("before_manifest")
        return updates

    @functools.wraps(mark_recorded)
    def _mark_recorded(self: Any, *args: Any, **kwargs: Any) -> None:
        _passed("after_manifest")
        mark_recorded(self, *args, **kwargs)
        _passed("after_state")

    harvester._record_updates = _record_updates
    broker.take_updates = _take_updates
    broker.mark_recorded = _mark_recorded


class _WrapAfterImport(importlib.abc.MetaPathFinder):
    """Finds the harvester module as usual, and wraps its methods once it has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != HARVESTER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            _wrap_harvester(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _NAME:
    sys.meta_path.insert(0, _WrapAfterImport())
