"""What a failed request means: its error text, whether it is worth another try, and when.

``describe_request_error`` turns what ``requests`` raised into ``"code: reason"``, the
reason dug out of the exception chain (``args``, urllib3's ``reason``, ``__cause__``,
``__context__``) without the library's wrappers (pool names, object addresses,
"Max retries exceeded"). The codes:

* ``timeout``: no answer in time (``timeout: connect timed out after 10 s``); retryable.
* ``connection_error``: refused, reset, name not resolved, body cut short; retryable.
* ``bad_response``: the server answered, but not in HTTP (a garbage status line, a
  header line too long); retryable, but the host is not down.
* ``tls_error``: the TLS handshake failed (``tls_error: certificate verify failed:
  self-signed certificate``); final, since trying again meets the same certificate.
* ``request_error``: anything else ``requests`` raises (a URL it cannot send); final.

``timeout`` and ``connection_error`` with no response at all are a host that gives
no answer (``retries.is_no_answer``): politeness pauses such a host, and the
harvester's own requests (pages, robots.txt) are retried on ``retries``' schedule.

Pure: no I/O, no clock. (The schedule lives apart in ``retries.py``: this module
imports requests and ssl, which the command line must not import before gevent
patches.)
"""

from __future__ import annotations

import http.client
import re
import ssl

import requests
import urllib3.exceptions

MAX_ERROR_CHARS = 300  # for pathological messages only; a reason is rarely a tenth of it

_MAX_CHAIN = 12
_TIMEOUT_SECONDS = re.compile(r"\((?:connect|read) timeout=([0-9.]+)\)")
_INCOMPLETE = re.compile(r"IncompleteRead\(([^()]*)\)")
_NOISE = (
    re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>(?:: )?"),  # <urllib3...HTTPConnection object at 0x7f>
    re.compile(r"\b\w*Connection(?:Pool)?\(host=[^()]*\)(?:: )?"),  # HTTPConnectionPool(host=..)
    re.compile(r"^\[SSL(?:: [A-Z0-9_]+)?\] "),
    re.compile(r" \(_ssl\.c:\d+\)"),
    re.compile(r"\[Errno -?\d+\] "),
)


def describe_request_error(exc: BaseException) -> tuple[str, bool]:
    """``(error text, retryable)`` for an exception ``requests`` raised (or any other).

    The text is ``"code: reason"`` (codes in the module docstring), at most
    ``MAX_ERROR_CHARS`` long, cut between words when it must be cut at all.
    """
    chain = exception_chain(exc)
    # urllib3's NewConnectionError (refused, unresolved) is a ConnectTimeoutError too.
    timeout = _first(
        chain,
        requests.Timeout,
        urllib3.exceptions.TimeoutError,
        TimeoutError,
        exclude=(urllib3.exceptions.NewConnectionError,),
    )
    if timeout is not None:
        return _bounded(f"timeout: {_timeout_reason(chain)}"), True
    tls = _first(chain, ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError)
    if tls is not None:
        return _bounded(f"tls_error: {_tls_reason(chain)}"), False
    incomplete = _first(chain, http.client.IncompleteRead)
    if incomplete is not None:
        return _bounded(f"connection_error: {_incomplete_reason(incomplete)}"), True
    refused = _first(chain, OSError, exclude=(requests.RequestException,))
    if refused is not None:  # refused, reset, unresolved, closed without an answer
        return _bounded(f"connection_error: {exception_reason(refused)}"), True
    garbled = _first(chain, http.client.HTTPException)
    if garbled is not None:
        return _bounded(f"bad_response: {_http_reason(garbled)}"), True
    if _first(chain, requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        return _bounded(f"connection_error: {exception_reason(chain[-1])}"), True
    return _bounded(f"request_error: {exception_reason(chain[-1])}"), False


def exception_reason(exc: BaseException) -> str:
    """The exception's own message without library noise: an OSError's ``strerror``
    (``connection refused``, ``no space left on device: '/out/x'``), else its text."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        text = _lower_first(exc.strerror)
        if exc.filename:
            text += f": {exc.filename!r}"
        return _bounded(text)
    return _bounded(_clean(str(exc)) or type(exc).__name__)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps, outermost first: exception ``args``, urllib3's
    ``reason``, ``__cause__`` and ``__context__``, each once, a dozen at most."""
    chain: list[BaseException] = []
    todo = [exc]
    while todo and len(chain) < _MAX_CHAIN:
        current = todo.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        inner = [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        inner += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += inner
    return chain


def _first(
    chain: list[BaseException], *kinds: type, exclude: tuple[type, ...] = ()
) -> BaseException | None:
    """The innermost exception of the chain that is one of ``kinds``."""
    for exc in reversed(chain):
        if isinstance(exc, kinds) and not isinstance(exc, exclude):
            return exc
    return None


def _timeout_reason(chain: list[BaseException]) -> str:
    connect = _first(
        chain, requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError
    )
    phase = "connect" if connect is not None else "read"
    for exc in chain:
        match = _TIMEOUT_SECONDS.search(str(exc))
        if match:
            return f"{phase} timed out after {float(match.group(1)):g} s"
    return f"{phase} timed out"


def _tls_reason(chain: list[BaseException]) -> str:
    verify = _first(chain, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError) and verify.verify_message:
        return f"certificate verify failed: {_lower_first(verify.verify_message)}"
    inner = _first(chain, ssl.SSLError) or chain[-1]
    message = inner.args[1] if isinstance(inner, ssl.SSLError) and len(inner.args) > 1 else inner
    return _clean(str(message)) or type(inner).__name__


def _incomplete_reason(exc: BaseException) -> str:
    match = _INCOMPLETE.search(repr(exc))
    return f"body cut short ({match.group(1)})" if match else "body cut short"


def _http_reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.BadStatusLine):
        return f"bad status line {str(exc).strip()[:80]!r}"
    return _clean(str(exc)) or type(exc).__name__


def _clean(text: str) -> str:
    for pattern in _NOISE:
        text = pattern.sub("", text)
    return _lower_first(" ".join(text.split()))


def _lower_first(text: str) -> str:
    """``Connection refused`` -> ``connection refused``; ``EOF occurred`` stays."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _bounded(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    cut = text[: MAX_ERROR_CHARS - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > MAX_ERROR_CHARS // 2 else cut) + "..."
