"""Named points where a test can have this process killed, to prove recovery from a
crash at exactly that point (between two writes that must agree, say).

``CRAWLERTEST_CRASH_AT=NAME:N`` kills the process with SIGKILL the N-th time it
passes point NAME (N defaults to 1). Unset, a pass costs one comparison. (Not a
``CRAWLER_`` variable: the config refuses the ones it does not know.)
"""

from __future__ import annotations

import os
import signal

_NAME, _, _COUNT = os.environ.get("CRAWLERTEST_CRASH_AT", "").partition(":")
_left = int(_COUNT) if _COUNT.isdigit() else 1


def crash_point(name: str) -> None:
    """Die here, as ``kill -9`` would, if the environment asks for it."""
    global _left
    if name != _NAME:
        return
    _left -= 1
    if _left <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
