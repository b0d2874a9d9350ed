"""When a request to a host that gives no answer is tried again, and how often.

The schedule shared by politeness (a host that is down is paused), robots.txt that
cannot be read, and the harvester's page retries. Pure: no I/O, no clock, no imports
of requests or ssl (the command line imports the politeness rules before gevent
patches).
"""

from __future__ import annotations

import math

MAX_DOWN_PAUSE = 120.0  # longest pause between tries of a host that gives no answer
NO_ANSWER_CODES = ("connection_error", "timeout")


def is_no_answer(error: str | None) -> bool:
    """Does this error text say the host gave no answer (refused, reset, unresolved,
    timed out)? Only meaningful for a request that got no response status."""
    return (error or "").startswith(NO_ANSWER_CODES)


def down_pause(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row to reach a host:
    1, 2, 4 ... up to ``MAX_DOWN_PAUSE``."""
    return min(2.0 ** min(max(failures, 1) - 1, 10), MAX_DOWN_PAUSE)


def down_tries(max_attempts: int, down_timeout: float) -> int:
    """How many tries a request to a host that gives no answer gets: at least
    ``max_attempts``, and enough for the ``down_pause`` pauses between them to add up
    to ``down_timeout``. With 3 and 600 s: 12 tries, the last about 10 minutes after
    the first."""
    tries, waited = 1, 0.0
    while waited < down_timeout and down_pause(tries) < MAX_DOWN_PAUSE:
        waited += down_pause(tries)
        tries += 1
    if waited < down_timeout:  # the rest at the longest pause
        tries += math.ceil(min(down_timeout - waited, 1e9) / MAX_DOWN_PAUSE)
    return max(tries, max_attempts)


def tries_allowed(no_answer: bool, max_attempts: int, down_timeout: float) -> int:
    """Tries of a harvester request (a page) that keeps failing for a passing reason.

    A host that gives no answer, or whose robots.txt cannot be read, gets
    ``down_tries``, as long as image tasks of a host that is down are retried; other
    passing failures (a body cut short) get ``max_attempts``, as images do.
    """
    return down_tries(max_attempts, down_timeout) if no_answer else max_attempts


def next_try_in(
    failures: int, no_answer: bool, max_attempts: int, down_timeout: float
) -> float | None:
    """Seconds until the next try of a harvester request that failed ``failures``
    times, or None when its ``tries_allowed`` are used up."""
    if failures >= tries_allowed(no_answer, max_attempts, down_timeout):
        return None
    return down_pause(failures)
