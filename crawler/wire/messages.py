"""What the harvester's server accepts from an authenticated peer: requests checked
before any of them reaches the manager or the broker. Pure functions.

A request is the manager's ``[ident, method, args, kwds]`` in JSON. The first request
of a connection names one of the manager's own methods (``FIRST_REQUESTS``: ``dummy``,
``create`` of our two queues, ``accept_connection``, ``incref``, ``decref``; never
``shutdown``, which would stop the server for everyone); the requests after it name a
broker call (``CALLS``) with arguments of the right types and sizes. Everything else
(not JSON, ``NaN``, a wrong type or shape, which bounds nesting to ``MAX_DEPTH``, a
huge number or string) raises ``BadMessage``, an ``EOFError``: the manager's connection loop ends on
it, so a bad message closes that connection only, and the server logs why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 4  # what the calls' shapes allow: [ident, method, [node, [{...}]], {}]
MAX_NAME = 256  # a node name, a method, an ident, a key of a node's info
MAX_TEXT = 1 << 20  # any other string (a URL has no length limit of its own)
MAX_ITEMS = 100_000  # ids of a heartbeat, results of a report, tasks of a lease
MAX_INT = 2**63 - 1
QUEUES = ("get_task_queue", "get_result_queue")


class BadMessage(EOFError):
    """A peer's request the server refuses; ``str()`` says why, without its contents."""


def _reject_constant(name: str) -> Any:
    raise BadMessage(f"not JSON data ({name})")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_request(data: bytes) -> list[Any]:
    """The request in ``data``, checked for shape (the caller checks the call with
    ``check_first_request`` or ``check_call``). Raises ``BadMessage``."""
    try:
        request = _DECODER.decode(data.decode("utf-8"))
    except BadMessage:
        raise
    except UnicodeDecodeError:
        raise BadMessage("not UTF-8") from None
    except RecursionError:
        raise BadMessage("nested too deeply") from None
    except ValueError:
        raise BadMessage("not JSON") from None
    if not isinstance(request, list) or len(request) != 4:
        raise BadMessage("not a request: [ident, method, args, kwds] expected")
    ident, method, args, kwds = request
    if ident is not None:
        _name(ident, "ident")
    _name(method, "method")
    if not isinstance(args, list) or len(args) > 4:
        raise BadMessage(f"{_short(method)}: args must be a list of at most 4")
    if kwds != {}:
        raise BadMessage(f"{_short(method)}: keyword arguments are not taken")
    return request


def check_first_request(request: list[Any]) -> None:
    """A connection's first request: one of the manager's methods we use."""
    _ident, method, args, _ = request
    if method == "dummy":
        _arity(method, args, 0)
    elif method == "create":
        _arity(method, args, 1)
        if args[0] not in QUEUES:
            raise BadMessage("create: no such queue")
    elif method == "accept_connection":
        _arity(method, args, 1)
        _name(args[0], "accept_connection's name")
    elif method in ("incref", "decref"):
        _arity(method, args, 1)
        _name(args[0], f"{method}'s ident")
    else:
        raise BadMessage(f"{_short(method)}: not a method a connection may start with")


def _node(value: Any) -> None:
    _name(value, "node")
    if not value:
        raise BadMessage("node: empty")


def _info(value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 32:
        raise BadMessage("info: an object of at most 32 fields expected")
    for key, item in value.items():
        _name(key, "info's key")
        _scalar(item, f"info[{_short(key)}]")


def _scalar(value: Any, what: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        _integer(value, what, -MAX_INT, MAX_INT)
    elif isinstance(value, float):
        return  # finite: NaN and Infinity never decode
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise BadMessage(f"{what}: a string longer than {MAX_TEXT}")
    else:
        raise BadMessage(f"{what}: a string, number, boolean or null expected")


def _integer(value: Any, what: str, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise BadMessage(f"{what}: an integer from {low} to {high} expected")


def _number(value: Any, what: str) -> None:
    if type(value) not in (int, float) or not -1e9 <= value <= 1e9:
        raise BadMessage(f"{what}: a number expected")


def _items(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise BadMessage(f"{what}: a list of at most {MAX_ITEMS} expected")
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _ids(value: Any) -> None:
    ids = _items(value, "ids")
    # C-level passes: a heartbeat or a report carries thousands of items.
    if ids and (set(map(type, ids)) != {int} or min(ids) < 0 or max(ids) > MAX_INT):
        raise BadMessage(f"ids: integers from 0 to {MAX_INT} expected")


def _results(value: Any) -> None:
    """A list of flat objects; each field's type and size is then the records' to check
    (``Result.from_wire`` reads what it can and drops the rest)."""
    results = _items(value, "results")
    if results and set(map(type, results)) != {dict}:
        raise BadMessage("results: objects expected")
    for item in results:
        if (
            len(item) > 64
            or not set(map(type, item.values())) <= _SCALARS
            or (item and max(map(len, item)) > MAX_NAME)
        ):
            raise BadMessage("results: objects of at most 64 fields of plain values expected")


def _limit(value: Any) -> None:
    _integer(value, "limit", 0, MAX_ITEMS)


def _wait(value: Any) -> None:
    _number(value, "wait")


# Each call's checks of its arguments, in order (the broker's signatures).
CALLS: dict[str, tuple[Callable[[Any], None], ...]] = {
    "join": (_node, _info),
    "lease_batch": (_node, _limit, _wait),
    "extend_leases": (_node, _ids),
    "report_results": (_node, _results),
    "leave": (_node,),
    "status": (),
}


def check_call(request: list[Any]) -> None:
    """A request after the first: a broker call with arguments it takes."""
    _ident, method, args, _ = request
    checks = CALLS.get(method)
    if checks is None:
        raise BadMessage(f"{_short(method)}: no such call")
    if method == "lease_batch" and len(args) == 2:
        checks = checks[:2]  # wait has a default
    _arity(method, args, len(checks))
    for check, value in zip(checks, args, strict=True):
        check(value)


def _arity(method: str, args: list[Any], count: int) -> None:
    if len(args) != count:
        raise BadMessage(f"{method}: {count} arguments expected, got {len(args)}")


def _name(value: Any, what: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise BadMessage(f"{what}: a string of at most {MAX_NAME} characters expected")


def _short(value: Any) -> str:
    """A peer's value, safe for the log: printable, at most 40 characters."""
    text = value if isinstance(value, str) else type(value).__name__
    return "".join(c if c.isprintable() else "?" for c in text[:40])


class RequestChecker:
    """A connection's decoder: its first request checked by ``check_first_request``,
    the rest by ``check_call``; ``on_bad(reason)`` is told of a ``BadMessage`` before it
    is raised."""

    def __init__(self, on_bad: Callable[[str], None]) -> None:
        self._first = True
        self._on_bad = on_bad

    def __call__(self, data: bytes) -> list[Any]:
        try:
            request = decode_request(data)
            if self._first:
                check_first_request(request)
                self._first = False
            else:
                check_call(request)
        except BadMessage as exc:
            self._on_bad(str(exc))
            raise
        return request
