"""Every operation on a shared crawl's state in Redis, each atomic within one partition.

The layout is ``keys.py``'s. What makes a takeover lose nothing:

* A page is a stream entry of its partition's ``pages``, read by the owner through
  the ``owner`` consumer group: until the owner acknowledges it (``finish_page``,
  after the page's links and images were added where they belong) it stays pending,
  and a new owner claims every pending entry (``claim_pages``) and fetches it again.
* An image task waits in its host's list until the owner releases it into ``ready``;
  a node leases it through the ``nodes`` group (a pending entry is a lease, a
  heartbeat resets its idle time, an entry idle longer than the lease is claimed by
  any node), and its result moves it atomically from ``ready`` to ``results``. The
  first result of a task wins: a second one finds nothing pending and is dropped.
* The owner settles a result (the final record into ``done``, or the task back into
  ``later`` to try again) in one script with its acknowledgement.

Every script that changes a partition on the owner's behalf checks first that the
caller still holds the partition's ``owner`` key (same hash slot): a harvester that
lost its lease (paused, cut off) cannot change what its successor now owns.

``open`` in a partition's ``counts`` is its pages and image tasks not final yet; the
crawl is finished when every partition's ``open`` is 0 in two passes that saw no
change in between (``ops`` counts every change), a consistent instant across slots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from crawler.shared.keys import CrawlKeys, PartitionKeys, fingerprint

OWNER_GROUP = "owner"
NODES_GROUP = "nodes"
NOT_OWNER = -1  # what an owner's script returns to a harvester that lost the partition
CLAIM_COUNT = 500

_OWNED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
"""

# KEYS: seen, pages, counts. ARGV: fingerprint, url, depth, referer, ...
ADD_PAGES = """
local added = 0
for i = 1, #ARGV, 4 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'u', ARGV[i+1], 'd', ARGV[i+2], 'r', ARGV[i+3])
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], 'open', added)
  redis.call('HINCRBY', KEYS[3], 'ops', 1)
end
return added
"""

# KEYS: seen, hosts, counts. ARGV: waiting prefix, then fingerprint, host, task, ...
ADD_IMAGES = """
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('RPUSH', ARGV[1] .. ARGV[i+1], ARGV[i+2])
    redis.call('SADD', KEYS[2], ARGV[i+1])
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], 'open', added)
  redis.call('HINCRBY', KEYS[3], 'ops', 1)
end
return added
"""

# KEYS: owner, pages, counts. ARGV: harvester, then entry, outcome, ...
FINISH_PAGES = (
    _OWNED
    + """
local done = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[2], 'owner', ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[2], ARGV[i])
    redis.call('HINCRBY', KEYS[3], ARGV[i+1], 1)
    done = done + 1
  end
end
if done > 0 then
  redis.call('HINCRBY', KEYS[3], 'open', -done)
  redis.call('HINCRBY', KEYS[3], 'ops', 1)
end
return done
"""
)

# KEYS: owner, waiting list, ready, busy, hosts, done, counts.
# ARGV: harvester, host, taken, released count, then released tasks (task, not
# before), then refused (fingerprint, record). The first ``taken`` tasks of the list
# (the ones the owner read) leave it.
RELEASE = (
    _OWNED
    + """
local taken = tonumber(ARGV[3])
local released = tonumber(ARGV[4])
if taken > 0 then redis.call('LPOP', KEYS[2], taken) end
local i = 5
for _ = 1, released do
  redis.call('XADD', KEYS[3], '*', 't', ARGV[i], 'nb', ARGV[i+1])
  i = i + 2
end
if released > 0 then redis.call('HINCRBY', KEYS[4], ARGV[2], released) end
local final = 0
while i <= #ARGV do
  if redis.call('HSETNX', KEYS[6], ARGV[i], ARGV[i+1]) == 1 then final = final + 1 end
  i = i + 2
end
if final > 0 then
  redis.call('HINCRBY', KEYS[7], 'open', -final)
  redis.call('HINCRBY', KEYS[7], 'failed', final)
end
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[5], ARGV[2]) end
redis.call('HINCRBY', KEYS[7], 'ops', 1)
return released
"""
)

# KEYS: ready, results. ARGV: node, then entry, result, ... (a node's results)
REPORT = """
local taken = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], 'nodes', ARGV[i]) == 1 then
    local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    local task = ''
    if entry[1] then
      local fields = entry[1][2]
      for j = 1, #fields, 2 do if fields[j] == 't' then task = fields[j+1] end end
    end
    redis.call('XADD', KEYS[2], '*', 't', task, 'r', ARGV[i+1], 'n', ARGV[1])
    taken = taken + 1
  end
end
return taken
"""

# KEYS: owner, results, busy, done, counts, later.
# ARGV: harvester, then entry, host, fingerprint, record, outcome, retry, due, ...
# (record '' : not final; retry '' : not tried again)
SETTLE = (
    _OWNED
    + """
local became = {}
local settled = 0
local final = 0
for i = 2, #ARGV, 7 do
  local new = 0
  if redis.call('XACK', KEYS[2], 'owner', ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[2], ARGV[i])
    settled = settled + 1
    if tonumber(redis.call('HINCRBY', KEYS[3], ARGV[i+1], -1)) <= 0 then
      redis.call('HDEL', KEYS[3], ARGV[i+1])
    end
    if ARGV[i+3] ~= '' then
      if redis.call('HSETNX', KEYS[4], ARGV[i+2], ARGV[i+3]) == 1 then
        redis.call('HINCRBY', KEYS[5], ARGV[i+4], 1)
        final = final + 1
        new = 1
      end
    elseif ARGV[i+5] ~= '' then
      redis.call('ZADD', KEYS[6], ARGV[i+6], ARGV[i+1] .. '\\n' .. ARGV[i+5])
    end
  end
  became[#became + 1] = new
end
if final > 0 then redis.call('HINCRBY', KEYS[5], 'open', -final) end
if settled > 0 then redis.call('HINCRBY', KEYS[5], 'ops', 1) end
return became
"""
)

# KEYS: owner, later, hosts. ARGV: harvester, now (ms), waiting prefix, limit.
DUE = (
    _OWNED
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
for _, member in ipairs(due) do
  local cut = string.find(member, '\\n', 1, true)
  local host = string.sub(member, 1, cut - 1)
  redis.call('RPUSH', ARGV[3] .. host, string.sub(member, cut + 1))
  redis.call('SADD', KEYS[3], host)
  redis.call('ZREM', KEYS[2], member)
end
return #due
"""
)

# KEYS: owner. ARGV: harvester, lease (ms).
RENEW = _OWNED + "redis.call('PEXPIRE', KEYS[1], ARGV[2])\nreturn 1\n"
# KEYS: owner. ARGV: harvester.
GIVE_UP = _OWNED + "redis.call('DEL', KEYS[1])\nreturn 1\n"


@dataclass(frozen=True)
class Entry:
    """A stream entry: its id and fields (text)."""

    id: str
    fields: dict[str, str]


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[Entry]:
    """XREADGROUP's or XAUTOCLAIM's entries; deleted ones (None fields) left out."""
    entries = []
    for entry_id, fields in raw or ():
        if fields is None:
            continue
        entries.append(
            Entry(_text(entry_id), {_text(key): _text(value) for key, value in fields.items()})
        )
    return entries


def _read(raw: Any) -> list[Entry]:
    """XREADGROUP's reply (RESP2: ``[[stream, entries]]``) as entries."""
    return [entry for _, value in raw or () for entry in _entries(value)]


def now_ms() -> int:
    return int(time.time() * 1000)


class SharedCrawl:
    """The state of crawl ``keys.name`` in the Redis of ``client`` (``Redis`` or
    ``RedisCluster``). Redis errors pass through (``connection.unavailable`` maps them)."""

    def __init__(self, client: Any, keys: CrawlKeys) -> None:
        self.client = client
        self.keys = keys
        register = client.register_script
        self._add_pages = register(ADD_PAGES)
        self._add_images = register(ADD_IMAGES)
        self._finish_pages = register(FINISH_PAGES)
        self._release = register(RELEASE)
        self._report = register(REPORT)
        self._settle = register(SETTLE)
        self._due = register(DUE)
        self._renew = register(RENEW)
        self._give_up = register(GIVE_UP)

    def part(self, number: int) -> PartitionKeys:
        return self.keys.partition(number)

    # -- the crawl as a whole ------------------------------------------------------

    def settings(self) -> dict[str, Any] | None:
        raw = self.client.hget(self.keys.settings, "json")
        return None if raw is None else json.loads(raw)

    def create(self, settings: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The crawl's settings: ``settings`` when this call started the crawl (True),
        else the ones it was started with (False)."""
        created = bool(self.client.hsetnx(self.keys.settings, "json", json.dumps(settings)))
        current = self.settings()
        assert current is not None
        return current, created

    def state(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.client.hgetall(self.keys.state).items()}

    def mark(self, field: str, value: str = "1") -> None:
        self.client.hset(self.keys.state, field, value)

    def take_page_budget(self, limit: int) -> bool:
        """One more page may be fetched under ``max_pages`` (0: no limit)."""
        if not limit:
            return True
        return int(self.client.hincrby(self.keys.state, "pages_taken", 1)) <= limit

    def heartbeat(self, harvester: str, alive_ms: int) -> list[str]:
        """Say ``harvester`` is alive for ``alive_ms`` more; returns the live ones, sorted."""
        now = now_ms()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.harvesters, {harvester: now + alive_ms})
        pipe.zremrangebyscore(self.keys.harvesters, "-inf", now)
        pipe.zrange(self.keys.harvesters, 0, -1)
        return sorted(_text(name) for name in pipe.execute()[-1])

    def heartbeat_list(self) -> list[str]:
        """The live harvesters, without saying this caller is one."""
        alive = self.client.zrangebyscore(self.keys.harvesters, now_ms(), "+inf")
        return sorted(_text(name) for name in alive)

    def leave(self, harvester: str) -> None:
        self.client.zrem(self.keys.harvesters, harvester)

    def owners(self) -> list[str | None]:
        pipe = self.client.pipeline(transaction=False)
        for number in range(self.keys.partitions):
            pipe.get(self.part(number).owner)
        return [None if raw is None else _text(raw) for raw in pipe.execute()]

    def claim(self, number: int, harvester: str, lease_ms: int) -> bool:
        """Take partition ``number`` if nobody holds it; makes its consumer groups."""
        if not self.client.set(self.part(number).owner, harvester, nx=True, px=lease_ms):
            return False
        part = self.part(number)
        for stream, group in ((part.pages, OWNER_GROUP), (part.results, OWNER_GROUP)):
            self._group(stream, group)
        self._group(part.ready, NODES_GROUP)
        return True

    def _group(self, stream: str, group: str) -> None:
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def renew(self, numbers: Sequence[int], harvester: str, lease_ms: int) -> list[int]:
        """Renew the leases on ``numbers``; returns the ones this harvester still holds."""
        pipe = self.client.pipeline(transaction=False)
        for number in numbers:
            self._renew(keys=[self.part(number).owner], args=[harvester, lease_ms], client=pipe)
        held = pipe.execute()
        return [number for number, kept in zip(numbers, held, strict=True) if kept == 1]

    def give_up(self, number: int, harvester: str) -> None:
        self._give_up(keys=[self.part(number).owner], args=[harvester])

    # -- pages ---------------------------------------------------------------------

    def add_pages(self, number: int, pages: Iterable[tuple[str, int, str]]) -> int:
        """Queue the pages not seen before in partition ``number``; returns how many."""
        args: list[Any] = []
        for url, depth, referer in pages:
            args += [fingerprint(url), url, depth, referer]
        if not args:
            return 0
        part = self.part(number)
        return int(self._add_pages(keys=[part.pages_seen, part.pages, part.counts], args=args))

    def claim_pages(self, number: int, harvester: str) -> list[Entry]:
        """Every page pending in partition ``number`` (a previous owner's in flight, or
        this harvester's before a restart), now this harvester's to fetch again."""
        return self._claim_all(self.part(number).pages, OWNER_GROUP, harvester)

    def claim_results(self, number: int, harvester: str) -> list[Entry]:
        return self._claim_all(self.part(number).results, OWNER_GROUP, harvester)

    def _claim_all(self, stream: str, group: str, consumer: str) -> list[Entry]:
        entries: list[Entry] = []
        cursor = "0-0"
        for _ in range(10_000):  # bounded: CLAIM_COUNT entries a round
            reply = self.client.xautoclaim(stream, group, consumer, 0, cursor, count=CLAIM_COUNT)
            cursor = _text(reply[0])
            entries += _entries(reply[1])
            if cursor == "0-0":
                break
        return entries

    def take_pages(self, number: int, harvester: str, count: int) -> list[Entry]:
        reply = self.client.xreadgroup(
            OWNER_GROUP, harvester, {self.part(number).pages: ">"}, count=count
        )
        return _read(reply)

    def finish_pages(self, number: int, harvester: str, done: Sequence[tuple[str, str]]) -> int:
        """Pages (entry, outcome counter) over; NOT_OWNER if the partition was lost."""
        if not done:
            return 0
        part = self.part(number)
        args: list[Any] = [harvester]
        for entry, outcome in done:
            args += [entry, outcome]
        return int(self._finish_pages(keys=[part.owner, part.pages, part.counts], args=args))

    # -- image tasks ---------------------------------------------------------------

    def add_images(self, number: int, images: Iterable[tuple[str, str, str]]) -> int:
        """Queue the image tasks (url, host, task JSON) not seen before in ``number``."""
        part = self.part(number)
        args: list[Any] = [part.waiting]
        for url, host, task in images:
            args += [fingerprint(url), host, task]
        if len(args) == 1:
            return 0
        return int(self._add_images(keys=[part.images_seen, part.hosts, part.counts], args=args))

    def waiting_hosts(self, number: int) -> list[str]:
        return sorted(_text(host) for host in self.client.smembers(self.part(number).hosts))

    def peek(self, number: int, host: str, count: int) -> list[str]:
        return [
            _text(raw) for raw in self.client.lrange(self.part(number).waiting + host, 0, count - 1)
        ]

    def release(
        self,
        number: int,
        harvester: str,
        host: str,
        taken: int,
        released: Sequence[tuple[str, int]],
        refused: Sequence[tuple[bytes, str]],
    ) -> int:
        """Move the first ``taken`` waiting tasks of ``host``: ``released`` (task JSON,
        not-before ms) to ``ready``, ``refused`` (fingerprint, final record) to ``done``."""
        part = self.part(number)
        args: list[Any] = [harvester, host, taken, len(released)]
        for task, not_before in released:
            args += [task, not_before]
        for print_, record in refused:
            args += [print_, record]
        keys = [part.owner, part.waiting + host, part.ready, part.busy, part.hosts, part.done]
        return int(self._release(keys=[*keys, part.counts], args=args))

    def busy(self, number: int) -> dict[str, int]:
        raw = self.client.hgetall(self.part(number).busy)
        return {_text(host): int(count) for host, count in raw.items()}

    def take_results(self, number: int, harvester: str, count: int) -> list[Entry]:
        reply = self.client.xreadgroup(
            OWNER_GROUP, harvester, {self.part(number).results: ">"}, count=count
        )
        return _read(reply)

    def settle(
        self, number: int, harvester: str, items: Sequence[tuple[Any, ...]]
    ) -> list[int] | None:
        """Results settled: each (entry, host, fingerprint, record, outcome, retry, due);
        record '' when not final, retry '' when not tried again. Returns, per item, 1
        when its record became final now; None when the partition was lost."""
        if not items:
            return []
        part = self.part(number)
        args: list[Any] = [harvester]
        for item in items:
            args += list(item)
        keys = [part.owner, part.results, part.busy, part.done, part.counts, part.later]
        became = self._settle(keys=keys, args=args)
        return None if became == NOT_OWNER else [int(flag) for flag in became]

    def move_due(self, number: int, harvester: str, limit: int = 500) -> int:
        """Tasks due again back to their hosts' lists."""
        part = self.part(number)
        keys = [part.owner, part.later, part.hosts]
        return int(self._due(keys=keys, args=[harvester, now_ms(), part.waiting, limit]))

    # -- what nodes call -----------------------------------------------------------

    def lease(self, node: str, numbers: Sequence[int], count: int) -> list[tuple[int, Entry]]:
        """Up to ``count`` tasks from each of partitions ``numbers`` (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for number in numbers:
            pipe.xreadgroup(NODES_GROUP, node, {self.part(number).ready: ">"}, count=count)
        leased = []
        for number, reply in zip(numbers, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                if "NOGROUP" in str(reply):
                    continue  # nobody owns it yet
                raise reply
            leased += [(number, entry) for entry in _read(reply)]
        return leased

    def reclaim(
        self, node: str, numbers: Sequence[int], idle_ms: int, count: int
    ) -> list[tuple[int, Entry]]:
        """Tasks whose lease ran out (idle over ``idle_ms``), now leased to ``node``."""
        pipe = self.client.pipeline(transaction=False)
        for number in numbers:
            pipe.xautoclaim(self.part(number).ready, NODES_GROUP, node, idle_ms, "0-0", count=count)
        claimed = []
        for number, reply in zip(numbers, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                if "NOGROUP" in str(reply):
                    continue
                raise reply
            claimed += [(number, entry) for entry in _entries(reply[1])]
        return claimed

    def extend(self, node: str, entries: dict[int, list[str]]) -> None:
        """Heartbeat: reset the idle time of ``node``'s leases (partition -> entries)."""
        pipe = self.client.pipeline(transaction=False)
        for number, ids in entries.items():
            pipe.xclaim(self.part(number).ready, NODES_GROUP, node, 0, ids, justid=True)
        pipe.execute(raise_on_error=False)

    def report(self, node: str, results: dict[int, list[tuple[str, str]]]) -> int:
        """Results (partition -> [(entry, result JSON)]); returns how many were the
        first for their task (the others were dropped)."""
        taken = 0
        for number, items in results.items():
            part = self.part(number)
            args: list[Any] = [node]
            for entry, result in items:
                args += [entry, result]
            taken += int(self._report(keys=[part.ready, part.results], args=args))
        return taken

    def node_seen(self, node: str, info: dict[str, Any]) -> None:
        self.client.hset(self.keys.nodes, node, json.dumps({**info, "seen": time.time()}))

    def node_gone(self, node: str) -> None:
        self.client.hdel(self.keys.nodes, node)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {_text(k): json.loads(v) for k, v in self.client.hgetall(self.keys.nodes).items()}

    # -- figures and the manifest --------------------------------------------------

    def counts(self) -> list[dict[str, int]]:
        """Each partition's counters (open, ops, stored, failed, pages_* ...)."""
        pipe = self.client.pipeline(transaction=False)
        for number in range(self.keys.partitions):
            pipe.hgetall(self.part(number).counts)
        return [{_text(k): int(v) for k, v in raw.items()} for raw in pipe.execute()]

    def quiet(self) -> bool:
        """No page or task is open anywhere, at one instant (two passes, no change)."""
        first = self.counts()
        if any(c.get("open", 0) for c in first):
            return False
        second = self.counts()
        return all(
            not b.get("open", 0) and a.get("ops", 0) == b.get("ops", 0)
            for a, b in zip(first, second, strict=True)
        )

    def waiting_counts(self) -> list[dict[str, int]]:
        """Per partition: tasks ready (not leased), leased, results unsettled, later."""
        pipe = self.client.pipeline(transaction=False)
        for number in range(self.keys.partitions):
            part = self.part(number)
            pipe.xlen(part.ready)
            pipe.xlen(part.pages)
            pipe.zcard(part.later)
            pipe.hvals(part.busy)
        raw = pipe.execute()
        figures = []
        for index in range(self.keys.partitions):
            ready, pages, later, busy = raw[index * 4 : index * 4 + 4]
            figures.append(
                {
                    "released": int(ready),
                    "pages_queued": int(pages),
                    "later": int(later),
                    "in_flight": sum(int(v) for v in busy),
                }
            )
        return figures

    def records(self, number: int) -> Iterable[dict[str, Any]]:
        """Partition ``number``'s final records, in no set order."""
        for _, raw in self.client.hscan_iter(self.part(number).done, count=1000):
            yield json.loads(raw)
