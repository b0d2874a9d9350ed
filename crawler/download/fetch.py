"""Download one image: stream, hash, size-check, sniff, verify, store. The unit the pool runs.

A body up to ``MEMORY_BODY_BYTES`` (most images) stays in memory: it is verified there
and written once, only if it is worth keeping; a larger one streams to a temporary file
as it arrives. Either way the body is hashed as it arrives; the committer reads the
temporary file back once, to check it holds those bytes, before it takes its name.

Everything a server can get wrong becomes a result with an ``error`` code and a
``retryable`` flag, never an exception: the downloader must report every task.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from crawler.config import Config
from crawler.errors import UnsafeTarget
from crawler.records import LOCAL_STORAGE, OPT_OUT, STORED, Result
from crawler.storage import (
    check_temporary,
    commit_file,
    image_relative_name,
    open_temporary,
    write_all,
)
from crawler.web.failures import describe_request_error, exception_reason
from crawler.web.optout import product_token, response_opt_out
from crawler.web.safehttp import body_chunks, open_url
from crawler.web.verify import SNIFF_BYTES, check_image, sniff_image_type

# Images are compressed already; asking for identity avoids decoding work (and bombs).
IMAGE_REQUEST_HEADERS = {"Accept-Encoding": "identity", "Accept": "image/*,*/*;q=0.5"}
# Worth another try later: the server or the network may recover.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Byte counts in results stay below 2**31, like max_image_bytes.
MAX_WIRE_INT = 2**31 - 1
# A server may ask for a pause before the next try; longer requests are cut to this.
MAX_RETRY_AFTER = 3600.0
_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
# Bodies up to this size are kept in memory (at concurrency 200, at most 50 MB).
MEMORY_BODY_BYTES = 256 * 1024
# Takes over a verified temporary file: (task id, temporary, path relative to OUT,
# size, sha256 of the body it must hold).
Keep = Callable[[int, str, str, int, str], None]


@dataclass(frozen=True)
class FetchLimits:
    """What one image fetch may take, built from the config (``from_config``), which is
    the one place the defaults live."""

    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_bytes: int
    max_redirects: int
    min_width: int
    min_height: int
    agent: str = ""  # the product token X-Robots-Tag lines may name (web.optout)
    skip_opted_out: bool = False  # a dataset crawl: an opted-out image is not read

    @classmethod
    def from_config(cls, config: Config) -> FetchLimits:
        download = config.download
        return cls(
            connect_timeout=download.connect_timeout,
            read_timeout=download.read_timeout,
            total_timeout=download.total_timeout,
            max_bytes=download.max_image_bytes,
            max_redirects=config.crawl.max_redirects,
            min_width=download.min_width,
            min_height=download.min_height,
            agent=product_token(config.crawl.user_agent),
        )


class TooSlow(Exception):
    """The body did not arrive within ``total_timeout``."""


def new_result(task_id: int, url: str, node: str) -> Result:
    """A failure with nothing fetched yet, which ``fetch_image`` fills in."""
    return Result(task_id, url, node, bytes=0, elapsed=0.0)


def retry_after_seconds(
    value: str | None, date: str | None, now: float, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds a ``Retry-After`` header asks us to wait, at most ``cap``; None if unusable.

    ``value`` is delay-seconds (``"120"``) or an HTTP-date. A date counts from the
    response's ``Date`` header when that parses (so a skewed server clock cancels out),
    else from ``now`` (Unix time). Garbage, negative delays and dates in the past give
    None: the caller's own backoff applies.
    """
    text = (value or "").strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        target = _http_date(text)
        if target is None:
            return None
        reference = _http_date(date)
        seconds = target - (now if reference is None else reference)
    if seconds < 0:
        return None
    return min(seconds, cap)  # also turns a delay too long for a float (inf) into the cap


def _http_date(text: str | None) -> float | None:
    """Unix time of an HTTP-date, or None. A date without a zone is taken as UTC."""
    try:
        parsed = parsedate_to_datetime(text or "")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def fetch_image(
    session: requests.Session,
    task_id: int,
    url: str,
    out: Path,
    node: str,
    limits: FetchLimits,
    keep: Keep | None = None,
    referer: str | None = None,
) -> Result:
    """Fetch ``url`` into ``out`` and describe what happened (see ``new_result``); the
    request carries ``referer`` as its ``Referer`` (image hosts refuse hotlinks).

    A verified image is written to a temporary file and handed to ``keep``, which
    moves it into place: the downloader stages it in a ``committer.Committer`` that makes
    a whole batch durable at once. Without ``keep`` the file is checked and renamed into
    place at once, without a sync (for tools and tests).
    """
    started = time.monotonic()
    result = new_result(task_id, url, node)
    body: _Body | None = None
    kept = False
    if keep is None:

        def keep(_task_id: int, temporary: str, relative: str, size: int, sha256: str) -> None:
            check_temporary(temporary, size, sha256)
            commit_file(temporary, out, relative, size, sha256)

    timeout = (limits.connect_timeout, limits.read_timeout)
    headers = IMAGE_REQUEST_HEADERS
    if referer is not None:
        headers = {**IMAGE_REQUEST_HEADERS, "Referer": referer}
    try:
        with open_url(session, url, timeout, limits.max_redirects, headers, lean=True) as response:
            result.status = response.status_code
            result.declared_type = response.headers.get("Content-Type")
            if not 200 <= response.status_code < 300 or response.status_code == 204:
                result.error = f"http_{response.status_code}"
                if response.status_code in RETRYABLE_STATUS:
                    result.retryable = True
                    result.retry_after = retry_after_seconds(
                        response.headers.get("Retry-After"),
                        response.headers.get("Date"),
                        time.time(),
                    )
                return result
            # Read before the body: a dataset crawl does not download an opted-out image.
            result.opt_out = response_opt_out(response.headers, limits.agent)
            if result.opt_out and limits.skip_opted_out:
                result.error = f"{OPT_OUT}: {result.opt_out}"
                return result
            declared = _declared_length(response)
            if declared is not None and declared > limits.max_bytes:
                result.error = "too_large"
                return result
            deadline = started + limits.total_timeout
            body = _Body(out)
            _stream_to(body, response, limits.max_bytes, deadline)
        body.close()
        size = body.size
        if size > limits.max_bytes:
            result.error = "too_large"
            result.bytes = min(size, MAX_WIRE_INT)
            return result
        if declared is not None and size != declared:
            result.error = "truncated"
            result.retryable = True
            result.bytes = size
            return result
        sniffed = sniff_image_type(body.head)
        if sniffed is None:
            result.error = "not_an_image"
            result.bytes = size
            return result
        mime, extension = sniffed
        source = Path(body.temporary) if body.temporary is not None else body.data
        check = check_image(source, extension, limits.min_width, limits.min_height)
        result.bytes = size
        result.content_type = mime
        result.width = check.width
        result.height = check.height
        if check.error is not None:
            result.error = check.error
            return result
        temporary = body.temporary or body.write_out()
        digest = body.digest.hexdigest()
        relative = image_relative_name(url, digest, extension)
        keep(task_id, temporary, relative, size, digest)
        kept = True
        result.outcome = STORED
        result.sha256 = digest
        result.path = relative
    except UnsafeTarget as exc:
        result.error = f"{exc.code}: {exc}"
        if getattr(exc, "address", None):
            result.peer = exc.address  # which address this node's policy refused
    except TooSlow:
        result.error = f"too_slow: over {limits.total_timeout:g} s"
    except requests.RequestException as exc:
        # timeout, connection_error, bad_response: retryable; tls_error, request_error: final
        error, retryable = describe_request_error(exc)
        result.error = error
        result.retryable = retryable
    except OSError as exc:  # after the requests errors, which are OSErrors too
        # Our side failed (disk full, permissions): not the URL's fault; the node hands
        # the task back without using an attempt (see ``LOCAL_STORAGE``).
        result.failed_locally(f"store_error: {exception_reason(exc)}", LOCAL_STORAGE)
    finally:
        if body is not None and not kept:
            body.discard()
        result.elapsed = round(time.monotonic() - started, 4)
    return result


def _declared_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None  # the length counts compressed bytes; we count decoded ones
    return int(value) if value.isdigit() else None


class _Body:
    """A response body as it arrives: hashed, its first bytes kept for sniffing, held in
    memory up to ``MEMORY_BODY_BYTES`` and spilled to a temporary file beyond."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.chunks: list[bytes] = []
        self.file: Any = None
        self.temporary: str | None = None

    @property
    def data(self) -> bytes:
        if len(self.chunks) > 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0] if self.chunks else b""

    def add(self, chunk: bytes) -> None:
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.size += len(chunk)
        self.digest.update(chunk)
        if self.file is None and self.size <= MEMORY_BODY_BYTES:
            self.chunks.append(chunk)
            return
        if self.file is None:
            self._open()
            write_all(self.file, b"".join(self.chunks))
            self.chunks = []
        write_all(self.file, chunk)

    def write_out(self) -> str:
        """The in-memory body as a temporary file, written at once."""
        self._open()
        write_all(self.file, self.data)
        self.chunks = []
        self.close()
        return self.temporary  # type: ignore[return-value]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def discard(self) -> None:
        """Close and delete the temporary file, if any (the body is not kept)."""
        self.close()
        if self.temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary)

    def _open(self) -> None:
        self.file = open_temporary(self.out)
        self.temporary = self.file.name


def _stream_to(body: _Body, response: requests.Response, max_bytes: int, deadline: float) -> None:
    """Take the body in large chunks; stop just past ``max_bytes``."""
    for chunk in body_chunks(response):
        if time.monotonic() > deadline:
            raise TooSlow
        if body.size + len(chunk) > max_bytes:
            body.size += len(chunk)  # counted, not kept: the caller refuses it as too large
            return
        body.add(chunk)
