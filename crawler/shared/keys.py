"""The crawl's keys in Redis, and which partition a host belongs to: pure functions.

Every key of partition ``p`` of crawl ``NAME`` starts ``crawler:{NAME:p}:`` and the
crawl-wide keys ``crawler:{NAME}:``: the braces are Redis Cluster hash tags, so each
partition's keys live in one slot and its Lua scripts run on a cluster unchanged.

A host (``host[:port]``, ``urls.host_of``) is in partition ``blake2b(host) mod P``:
stable across processes, machines and Python versions (``hash()`` is salted). URLs
are tested for "seen" by an 8-byte BLAKE2b fingerprint, not kept whole: two URLs of
one partition share a fingerprint with probability about n²/2⁶⁵ (under 10⁻⁷ at 10⁶
URLs), and then the second one is taken for seen.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

FINGERPRINT_BYTES = 8
# A crawl name goes into every key: letters, digits and ._- only (no braces, colons).
CRAWL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Task ids a node sees pack the partition and the stream entry id into one integer
# under 2**63 (what records and the nodes' spools take): 10 bits of partition, 14 of
# the entry's sequence within its millisecond (a release adds at most 500), 39 of its
# milliseconds since ``_EPOCH_MS`` (2023-11-14; room until 2041).
_PARTITION_BITS = 10
_SEQUENCE_BITS = 14
_EPOCH_MS = 1_700_000_000_000
MAX_PARTITIONS = 1 << _PARTITION_BITS


def valid_crawl_name(name: str) -> bool:
    return CRAWL_NAME.fullmatch(name) is not None


def partition_of(host: str, partitions: int) -> int:
    """The partition of ``host`` (``host[:port]``, lower case) among ``partitions``."""
    digest = hashlib.blake2b(host.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def fingerprint(url: str) -> bytes:
    """The fixed-size stand-in for ``url`` in the seen sets."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def task_id(partition: int, entry: str) -> int:
    """One integer for a node: ``partition`` and the stream entry id ``MS-SEQ``."""
    ms, _, seq = entry.partition("-")
    sequence = int(seq or 0)
    if sequence >> _SEQUENCE_BITS:
        raise ValueError(f"stream entry {entry}: too many entries in one millisecond")
    since = int(ms) - _EPOCH_MS
    return (((since << _SEQUENCE_BITS) | sequence) << _PARTITION_BITS) | partition


def split_task_id(number: int) -> tuple[int, str]:
    """``task_id`` undone: ``(partition, "MS-SEQ")``."""
    partition = number & (MAX_PARTITIONS - 1)
    rest = number >> _PARTITION_BITS
    ms = (rest >> _SEQUENCE_BITS) + _EPOCH_MS
    return partition, f"{ms}-{rest & ((1 << _SEQUENCE_BITS) - 1)}"


@dataclass(frozen=True)
class PartitionKeys:
    """The keys of one partition (all in one hash slot)."""

    prefix: str

    @property
    def pages_seen(self) -> str:  # SET of page URL fingerprints
        return self.prefix + "pseen"

    @property
    def images_seen(self) -> str:  # SET of image URL fingerprints
        return self.prefix + "iseen"

    @property
    def pages(self) -> str:  # STREAM of pages to fetch; group OWNER (pending: in flight)
        return self.prefix + "pages"

    @property
    def hosts(self) -> str:  # SET of hosts with waiting image tasks
        return self.prefix + "hosts"

    @property
    def waiting(self) -> str:  # + host: LIST of a host's waiting image tasks (JSON)
        return self.prefix + "wait:"

    @property
    def later(self) -> str:  # ZSET of tasks to try again, scored by wall-clock due (ms)
        return self.prefix + "later"

    @property
    def ready(self) -> str:  # STREAM of released tasks; group NODES (pending: leases)
        return self.prefix + "ready"

    @property
    def results(self) -> str:  # STREAM of results for the owner; group OWNER
        return self.prefix + "results"

    @property
    def busy(self) -> str:  # HASH host -> tasks released and not yet answered
        return self.prefix + "busy"

    @property
    def done(self) -> str:  # HASH URL fingerprint -> final manifest record (JSON)
        return self.prefix + "done"

    @property
    def counts(self) -> str:  # HASH open, stored, failed, pages_done, pages_failed ...
        return self.prefix + "counts"

    @property
    def owner(self) -> str:  # STRING: the owning harvester, with a TTL (its lease)
        return self.prefix + "owner"


@dataclass(frozen=True)
class CrawlKeys:
    """The keys of crawl ``name`` with ``partitions`` partitions."""

    name: str
    partitions: int

    def partition(self, number: int) -> PartitionKeys:
        return PartitionKeys(f"crawler:{{{self.name}:{number}}}:")

    def of_host(self, host: str) -> int:
        return partition_of(host, self.partitions)

    @property
    def settings(self) -> str:  # HASH: the crawl's settings, written by its first harvester
        return f"crawler:{{{self.name}}}:settings"

    @property
    def harvesters(self) -> str:  # ZSET harvester id -> alive until (ms)
        return f"crawler:{{{self.name}}}:harvesters"

    @property
    def nodes(self) -> str:  # HASH node -> JSON (info, last seen)
        return f"crawler:{{{self.name}}}:nodes"

    @property
    def state(self) -> str:  # HASH: started, finished, pages_taken
        return f"crawler:{{{self.name}}}:state"
