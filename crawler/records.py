"""The records that cross between stages, and the codes they carry.

This module owns three formats, each a typed class with ``to_wire``/``from_wire``
(plain JSON data, the same on every wire):

* ``LeasedTask``: a task as a node receives it (the harvester's ``lease`` reply).
* ``Result``: what a node reports for one task.
* ``ManifestRecord``: the final line of one image URL in ``OUT/manifest.jsonl``.

and the replies of the broker calls (``JoinReply``, ``LeaseReply``). Guarantee of every
``from_wire``: it never raises on data a peer sent; a field of the wrong type reads as
absent (its default), so a hostile or older node cannot break the harvester.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

# A task's states; the last two are final.
PENDING = "pending"
LEASED = "leased"
STORED = "stored"
FAILED = "failed"
FINAL_STATES = frozenset({STORED, FAILED})

# Values of a result's ``local``: the node's own side failed, not the URL, and the task
# goes back without using an attempt.
LOCAL_STORAGE = "storage"  # the node cannot store files (disk full, read-only, ...)
LOCAL_POLICY = "policy"  # the node refuses an address the crawl allows
LOCAL_ERROR = "error"  # an unexpected exception on the node (a bug)
LOCAL_FAULTS = frozenset({LOCAL_STORAGE, LOCAL_POLICY, LOCAL_ERROR})

# Errors the harvester itself gives a task whose leases ran out.
LEASE_EXPIRED = "lease_expired"
NODE_LOST = "node_lost"
LOST_LEASES = (LEASE_EXPIRED, NODE_LOST)

# The error code of an image a dataset crawl did not download for its opt-out
# (``opt_out: SIGNAL``): final, and never retried.
OPT_OUT = "opt_out"


def error_code(error: str | None) -> str:
    """The code of an error text ``code: reason`` (``http_503``, ``store_error`` ...);
    ``unknown`` for none. What failures are grouped, retried and labelled by."""
    return (error or "").split(":", 1)[0].strip() or "unknown"


_LARGEST_INT = 2**63 - 1  # what SQLite stores; larger integers from a peer read as absent
MAX_WIRE_TEXT = 4096  # characters of a text field kept from a peer

# How a value ``x`` of each declared type is read from a peer's data: a test that is
# true for a value of the type, and what is then kept. The one source of these rules:
# the readers below and the generated ones of ``_reader`` are written from it.
_CHECKS: dict[str, tuple[str, str]] = {
    "int": ("type(x) is int and -_LARGEST_INT <= x <= _LARGEST_INT", "x"),
    "float": ("type(x) in (int, float) and math.isfinite(x)", "float(x)"),
    "str": ("type(x) is str", "x[:MAX_WIRE_TEXT]"),
    "bool": ("type(x) is bool", "x"),
}
_NAMESPACE = {"math": math, "_LARGEST_INT": _LARGEST_INT, "MAX_WIRE_TEXT": MAX_WIRE_TEXT}


def _compiled(source: str, name: str, **names: Any) -> Any:
    """The function ``name`` that ``source`` defines (our own source, written from the
    field types, as ``dataclasses`` writes ``__init__``)."""
    namespace = {**_NAMESPACE, **names}
    exec(source, namespace)
    return namespace[name]


def _value_reader(kind: str) -> Callable[[Any], Any]:
    check, use = _CHECKS[kind]
    return _compiled(f"def read(x):\n    return {use} if {check} else None", "read")


_int, _float, _text = map(_value_reader, ("int", "float", "str"))


@functools.cache
def _reader(cls: type, given: tuple[str, ...]) -> Callable[..., Any]:
    """``read(data, *given)``: a record of ``cls`` from wire data, each field checked
    against its declared type (``_CHECKS``), its default where absent or of another
    type (a text without default: empty); the ``given`` fields as passed. Written out
    once per class: records are read on the broker's hot path, and a loop over the
    fields cost several times as much."""
    lines = [f"def read(data, {', '.join(given)}):", "    get = data.get"]
    defaults: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.name in given:
            continue
        check, use = _CHECKS[str(spec.type).removesuffix(" | None")]
        defaults[f"_default_{spec.name}"] = "" if spec.default is MISSING else spec.default
        lines += [
            f"    x = get({spec.name!r})",
            f"    {spec.name} = {use} if {check} else _default_{spec.name}",
        ]
    # Positional: keyword arguments made the call to __init__ five times as slow.
    lines.append(f"    return cls({', '.join(spec.name for spec in dataclasses.fields(cls))})")
    return _compiled("\n".join(lines), "read", cls=cls, **defaults)


@functools.cache
def _wire_of(cls: type, leave_out: tuple[str, ...] = ()) -> Callable[[Any], dict[str, Any]]:
    """``wire(record)``: a record's fields as a dict (``to_wire``), but ``leave_out``;
    written out once per class as a dict display, the fastest way to build it."""
    names = [spec.name for spec in dataclasses.fields(cls) if spec.name not in leave_out]
    items = ", ".join(f"{name!r}: record.{name}" for name in names)
    return _compiled(f"def wire(record):\n    return {{{items}}}", "wire")


@dataclass(frozen=True, slots=True)
class LeasedTask:
    """A task handed to a node: fetch ``url``, report under ``id``.

    ``start_in`` (seconds from the lease) is set for a host with a delay: the request
    may not start earlier, and the node keeps ``spacing`` seconds between the end of one
    request to the host and the start of the next. ``referer`` is the ``Referer``
    header the request carries (None: none)."""

    id: int
    url: str
    start_in: float | None = None
    spacing: float = 0.0
    referer: str | None = None

    def to_wire(self) -> list[Any]:
        """``[id, url]``, ``[id, url, start_in, spacing]`` for a host with a delay, and
        ``[id, url, start_in, spacing, referer]`` with a Referer (an older node reads
        the first four)."""
        if self.referer is not None:
            return [self.id, self.url, self.start_in, self.spacing, self.referer]
        if self.start_in is None:
            return [self.id, self.url]
        return [self.id, self.url, self.start_in, self.spacing]

    @classmethod
    def from_wire(cls, data: Any) -> LeasedTask | None:
        if not isinstance(data, list | tuple) or len(data) < 2:
            return None
        task_id, url = _int(data[0]), _text(data[1])
        if task_id is None or url is None:
            return None
        start_in = _float(data[2]) if len(data) > 2 else None
        spacing = (_float(data[3]) if len(data) > 3 else None) or 0.0
        referer = _text(data[4]) if len(data) > 4 else None
        return cls(task_id, url, start_in, max(spacing, 0.0), referer)


@dataclass(slots=True)
class Result:
    """What happened to one task on a node. ``outcome`` is ``STORED`` or ``FAILED``;
    a failure is retried when ``retryable`` (not sooner than ``retry_after`` seconds),
    and goes back without using an attempt when ``local`` names a fault of the node's
    own side. ``opt_out`` is the image's own opt-out signal (``web.optout``).
    ``peer`` (the address a node's policy refused) never leaves the node."""

    id: int
    url: str
    node: str = ""
    outcome: str = FAILED
    status: int | None = None
    bytes: int | None = None  # None: nothing was fetched (a task refused or lost)
    sha256: str | None = None
    content_type: str | None = None
    declared_type: str | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    elapsed: float | None = None
    local: str | None = None
    opt_out: str | None = None  # the image's response opted out of AI use (its signal)
    peer: str | None = field(default=None, compare=False)

    @property
    def stored(self) -> bool:
        return self.outcome == STORED

    def to_wire(self) -> dict[str, Any]:
        wire = _wire_of(Result, ("peer", "local"))(self)
        if self.local is not None:
            wire["local"] = self.local
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> Result | None:
        """A result as a peer sent it; None when it names no task (no integer ``id``)."""
        task_id = _int(data.get("id")) if isinstance(data, dict) else None
        if task_id is None:
            return None
        local = data.get("local")
        return _reader(cls, ("id", "outcome", "local", "peer"))(
            data,
            task_id,
            STORED if data.get("outcome") == STORED else FAILED,
            # Any true value counts, as before: a fault of the node, whatever it names.
            (local if local in LOCAL_FAULTS else LOCAL_ERROR) if local else None,
            None,
        )

    def failed_locally(self, error: str, local: str) -> None:
        """Turn this result into a hand-back for a fault of the node's own side."""
        self.outcome, self.error, self.retryable, self.local = FAILED, error, True, local
        self.path = self.sha256 = None


@dataclass(slots=True)
class ManifestRecord:
    """The final record of one image URL: one per URL, whatever happened.

    ``attempts`` are the tries that count against ``max_attempts``; ``leases`` how
    often the task was handed out in all. ``path`` (relative to the storing node's
    OUT) is set only for a stored image."""

    url: str
    page: str
    kind: str
    outcome: str
    status: int | None = None
    error: str | None = None
    path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    attempts: int = 0
    leases: int = 0
    node: str | None = None
    elapsed: float | None = None
    opt_out: str | None = None  # the image or its page opted out of AI use (the signal)

    def to_wire(self) -> dict[str, Any]:
        return _wire_of(ManifestRecord)(self)

    @classmethod
    def from_wire(cls, data: Any) -> ManifestRecord | None:
        """A manifest line's record; None for one without a URL (not a record)."""
        url = _text(data.get("url")) if isinstance(data, dict) else None
        if url is None:
            return None
        outcome = STORED if data.get("outcome") == STORED else FAILED
        return _reader(cls, ("url", "outcome"))(data, url, outcome)


@dataclass(frozen=True, slots=True)
class AddressPolicyRecord:
    """The crawl's address policy as the harvester tells it to nodes."""

    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"allow_private": self.allow_private, "allow_networks": list(self.allow_networks)}

    @classmethod
    def from_wire(cls, data: Any) -> AddressPolicyRecord | None:
        if not isinstance(data, Mapping):
            return None
        networks = data.get("allow_networks") or ()
        if not isinstance(networks, list | tuple):
            networks = ()
        return cls(data.get("allow_private") is True, tuple(n for n in networks if type(n) is str))


@dataclass(frozen=True, slots=True)
class JoinReply:
    """What a node must respect, told when it joins: lease and heartbeat periods, the
    crawl's User-Agent (empty: the node's own), address policy (None: unknown), and
    whether opted-out images are left undownloaded (a dataset crawl)."""

    lease_seconds: float
    heartbeat_seconds: float
    user_agent: str = ""
    address_policy: AddressPolicyRecord | None = None
    skip_opted_out: bool = False  # a dataset crawl: an opted-out image is not downloaded

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "lease_seconds": self.lease_seconds,
            "heartbeat_seconds": self.heartbeat_seconds,
        }
        if self.user_agent:
            wire["user_agent"] = self.user_agent
        if self.skip_opted_out:
            wire["skip_opted_out"] = True
        if self.address_policy is not None:
            wire["address_policy"] = self.address_policy.to_wire()
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> JoinReply:
        data = data if isinstance(data, Mapping) else {}
        heartbeat = _float(data.get("heartbeat_seconds"))
        return cls(
            lease_seconds=_float(data.get("lease_seconds")) or 0.0,
            heartbeat_seconds=heartbeat if heartbeat and heartbeat > 0 else 10.0,
            user_agent=_text(data.get("user_agent")) or "",
            address_policy=AddressPolicyRecord.from_wire(data.get("address_policy")),
            skip_opted_out=data.get("skip_opted_out") is True,
        )


@dataclass(frozen=True, slots=True)
class LeaseReply:
    """Tasks leased to a node; ``done`` once the harvester has no more work at all."""

    tasks: Sequence[LeasedTask] = ()
    done: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"tasks": [task.to_wire() for task in self.tasks], "done": self.done}

    @classmethod
    def from_wire(cls, data: Any) -> LeaseReply:
        data = data if isinstance(data, Mapping) else {}
        raw = data.get("tasks")
        tasks = [LeasedTask.from_wire(item) for item in raw] if isinstance(raw, list) else []
        return cls([task for task in tasks if task is not None], data.get("done") is True)


# Built once: json.dumps with any non-default option builds a new encoder per call.
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def record_line(record: dict[str, Any]) -> str:
    """A manifest record as its line (without the newline): keys sorted, UTF-8 as is."""
    return _RECORD_ENCODER.encode(record)
