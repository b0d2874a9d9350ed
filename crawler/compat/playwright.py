"""Playwright's private internals: its driver started in a session of its own.

Playwright starts its Node.js driver (which starts Chromium) as a plain child process,
in the harvester's process group. Ctrl-C at a terminal reaches the whole group: the
browser would die at once, before the harvester has decided how to stop, and the pages
being rendered would end with a failed render instead of being left for the resume.
``start_playwright`` starts the driver with ``start_new_session=True`` instead, by
handing ``playwright._impl.transport`` (which calls ``asyncio.create_subprocess_exec``
through its module global ``asyncio``) a stand-in for that module while it starts.
The driver still exits when the harvester does: it stops when its stdin closes.
If a Playwright release moves this, the driver starts as before (in the group).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any


async def start_playwright() -> Any:
    """``async_playwright().start()``, its driver in a new session where possible."""
    from playwright.async_api import async_playwright

    try:
        from playwright._impl import transport
    except ImportError:  # moved: start it as Playwright does
        return await async_playwright().start()
    if getattr(transport, "asyncio", None) is not asyncio:
        return await async_playwright().start()

    async def exec_in_own_session(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("start_new_session", True)
        return await asyncio.create_subprocess_exec(*args, **kwargs)

    standin = types.SimpleNamespace(**vars(asyncio))
    standin.create_subprocess_exec = exec_in_own_session
    transport.asyncio = standin
    try:
        return await async_playwright().start()
    finally:
        transport.asyncio = asyncio
