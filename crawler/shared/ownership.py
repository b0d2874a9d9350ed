"""Which live harvester owns which partition: rendezvous hashing, pure.

Each partition prefers the live harvester with the highest ``blake2b(partition,
harvester)``. So when a harvester joins, only the partitions that now prefer it move
(about P/n of them), and when one dies only its own move, spread over the others.
A partition is held by a lease in Redis (``store.claim``, renewed by ``store.renew``);
``plan`` says what one harvester should claim and give up, given the live harvesters
and the current owners. A free partition is claimed by its preferred harvester, or by
anyone once it has been free for ``ORPHAN_ROUNDS`` rounds (its preferred harvester
may be dead and not yet out of the live list).

Timing, with ``partition_lease`` L and a round every L/3: a harvester that dies loses
its leases and its place in the live list after L, and its partitions are taken
within one more round: within 4L/3 (13.3 s by default). A joining harvester gets its
partitions within two rounds (2L/3), after their owners gave them up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

ORPHAN_ROUNDS = 3


def preferred(partition: int, live: Sequence[str]) -> str | None:
    """The live harvester partition ``partition`` prefers (None: nobody is live)."""
    if not live:
        return None
    return max(
        live,
        key=lambda name: hashlib.blake2b(f"{partition}\0{name}".encode(), digest_size=8).digest(),
    )


@dataclass(frozen=True)
class Plan:
    claim: tuple[int, ...]
    give_up: tuple[int, ...]


def plan(
    me: str, live: Sequence[str], owners: Sequence[str | None], free_rounds: Sequence[int]
) -> Plan:
    """What ``me`` should do this round. ``owners[p]`` is partition p's holder now,
    ``free_rounds[p]`` how many rounds in a row it was seen free."""
    everyone = sorted(set(live) | {me})
    claim, give_up = [], []
    for partition, owner in enumerate(owners):
        best = preferred(partition, everyone)
        if owner == me and best != me:
            give_up.append(partition)
        elif owner is None and (best == me or free_rounds[partition] >= ORPHAN_ROUNDS):
            claim.append(partition)
    return Plan(tuple(claim), tuple(give_up))
