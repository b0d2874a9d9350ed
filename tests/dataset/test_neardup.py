"""Near-duplicate groups: copies of one picture within the default distance, different
pictures not, the largest as representative, and the banded search exact."""

from __future__ import annotations

import io
import random

from PIL import Image

from crawler.dataset.neardup import (
    DEFAULT_MAX_DISTANCE,
    Hashed,
    hamming,
    near_duplicate_groups,
    perceptual_hash,
)
from crawler.demo.dataset_site import encoded, picture


def test_copies_of_a_picture_are_near_and_other_pictures_are_not():
    original = picture(3, 480)
    base = perceptual_hash(encoded(original))
    assert base is not None and base.bit_length() <= 64
    copies = [
        encoded(original.resize((240, 180))),
        encoded(original, quality=40),
        encoded(original, "PNG"),
        encoded(original.crop((4, 3, 476, 357))),
    ]
    for copy in copies:
        assert hamming(base, perceptual_hash(copy)) <= DEFAULT_MAX_DISTANCE
    for seed in range(10, 30):
        assert hamming(base, perceptual_hash(encoded(picture(seed, 480)))) > DEFAULT_MAX_DISTANCE


def test_odd_images_hash_and_junk_does_not():
    frames = [Image.new("P", (32, 32), i) for i in (1, 200)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    rgba = io.BytesIO()
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(rgba, "PNG")
    assert perceptual_hash(gif.getvalue()) is not None
    assert perceptual_hash(rgba.getvalue()) is not None
    assert perceptual_hash(b"not an image") is None
    assert perceptual_hash(b"\xff\xd8\xff\xe0 truncated jpeg") is None


def test_groups_map_to_the_largest_and_ties_are_deterministic():
    items = [
        Hashed("b" * 64, 0b0000, 100, 10),
        Hashed("a" * 64, 0b0011, 400, 10),  # the largest
        Hashed("c" * 64, 0b0111, 400, 5),
        Hashed("d" * 64, 0xF0F0_0000_0000_0000, 900, 9),  # far from all
    ]
    groups = near_duplicate_groups(items, 2)
    assert groups == {"a" * 64: "a" * 64, "b" * 64: "a" * 64, "c" * 64: "a" * 64}
    assert near_duplicate_groups(reversed(items), 2) == groups
    tie = [Hashed("f" * 64, 1, 10, 10), Hashed("e" * 64, 1, 10, 10)]
    assert near_duplicate_groups(tie, 0) == {"e" * 64: "e" * 64, "f" * 64: "e" * 64}
    assert near_duplicate_groups([Hashed("a" * 64, 5, 1, 1)] * 3, 4) == {}  # one image


def brute_force(items: list[Hashed], distance: int) -> set[frozenset[str]]:
    parent = {item.sha256: item.sha256 for item in items}

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if hamming(a.phash, b.phash) <= distance:
                parent[root(a.sha256)] = root(b.sha256)
    groups: dict[str, set[str]] = {}
    for item in items:
        groups.setdefault(root(item.sha256), set()).add(item.sha256)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def test_the_banded_search_finds_exactly_what_comparing_every_pair_finds():
    rng = random.Random(5)
    items = []
    for n in range(1500):
        value = rng.getrandbits(64)
        items.append(Hashed(f"{n:064x}", value, rng.randrange(1000), 1))
        if n % 5 == 0:  # a planted neighbour a few bits away
            for bit in rng.sample(range(64), rng.randrange(1, 12)):
                value ^= 1 << bit
            items.append(Hashed(f"{n + 100_000:064x}", value, 1, 1))
    for distance in (0, 3, 8, 12):
        groups = near_duplicate_groups(items, distance)
        found: dict[str, set[str]] = {}
        for sha, representative in groups.items():
            found.setdefault(representative, set()).add(sha)
        assert {frozenset(g) for g in found.values()} == brute_force(items, distance)


def test_the_configured_default_is_the_measured_one():
    from crawler.config import Config

    assert Config().dataset.near_duplicate_distance == DEFAULT_MAX_DISTANCE
