"""Near-duplicate detection (``crawler.dataset.neardup``), measured: precision and recall
at several Hamming distances on generated pictures and their copies (resized,
re-encoded, cropped, converted), recall per kind of copy, and hashing speed.

Pairs: every two images of one base picture are a true pair; a pair is found when the
grouping puts both in one group. Precision = true pairs found / pairs found; recall =
true pairs found / true pairs. Not a test: it prints figures. Run from the repository:
    .venv/bin/python scripts/neardup_bench.py [--images 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from crawler.dataset.neardup import (
    DEFAULT_MAX_DISTANCE,
    Hashed,
    hamming,
    near_duplicate_groups,
    perceptual_hash,
)
from crawler.demo.dataset_site import encoded, picture

DISTANCES = (0, 2, 4, 6, 8, 10, 12, 14)


def _crop(image: Image.Image, share: float) -> Image.Image:
    dx, dy = int(image.width * share), int(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


# Kinds of copy: name -> (image -> bytes).
COPIES = {
    "resized 50%": lambda im: encoded(im.resize((im.width // 2, im.height // 2))),
    "resized 25%": lambda im: encoded(im.resize((im.width // 4, im.height // 4))),
    "jpeg q50": lambda im: encoded(im, quality=50),
    "png": lambda im: encoded(im, "PNG"),
    "cropped 2%": lambda im: encoded(_crop(im, 0.02)),
    "cropped 5%": lambda im: encoded(_crop(im, 0.05)),
    "resized+cropped+q60": lambda im: encoded(_crop(im, 0.02).resize((300, 220)), quality=60),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="base pictures")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--width", type=int, default=480)
    args = parser.parse_args()
    items: list[tuple[int, str, bytes]] = []  # (base, kind, bytes)
    for number in range(args.images):
        base = picture(args.seed * 100_000 + number, args.width)
        items.append((number, "original", encoded(base)))
        items += [(number, kind, make(base)) for kind, make in COPIES.items()]
    started = time.perf_counter()
    hashes = [perceptual_hash(data) for _, _, data in items]
    hashing = time.perf_counter() - started
    print(
        f"{len(items)} images ({args.images} pictures x {len(COPIES) + 1}), {args.width} px "
        f"wide: hashed at {len(items) / hashing:,.0f} images/s"
    )
    records = [
        Hashed(f"{i:064x}", value, 0, len(data))
        for i, ((_, _, data), value) in enumerate(zip(items, hashes, strict=True))
        if value is not None
    ]
    print("| distance | precision | recall | pairs found | " + " | ".join(COPIES) + " |")
    print("| ---: | ---: | ---: | ---: |" + " ---: |" * len(COPIES))
    for distance in DISTANCES:
        started = time.perf_counter()
        groups = near_duplicate_groups(records, distance)
        grouping = time.perf_counter() - started
        group = [groups.get(f"{i:064x}", f"{i:064x}") for i in range(len(items))]
        found = true = both = 0
        for a, b in itertools.combinations(range(len(items)), 2):
            same_group, same_base = group[a] == group[b], items[a][0] == items[b][0]
            found += same_group
            true += same_base
            both += same_group and same_base
        # Recall of each kind: its copy grouped with its original.
        kinds = Counter()
        for i, (_, kind, _) in enumerate(items):
            original = i - [*COPIES].index(kind) - 1 if kind != "original" else i
            if kind != "original" and group[i] == group[original]:
                kinds[kind] += 1
        mark = " (default)" if distance == DEFAULT_MAX_DISTANCE else ""
        per_kind = " | ".join(f"{kinds[k] / args.images:.2f}" for k in COPIES)
        print(
            f"| {distance}{mark} | {both / found if found else 1:.3f} | "
            f"{both / true:.3f} | {found} | {per_kind} |  ({grouping * 1000:.0f} ms)"
        )
    distances = sorted(
        hamming(hashes[a], hashes[b])
        for a, b in itertools.combinations(range(0, len(items), len(COPIES) + 1), 2)
        if hashes[a] is not None and hashes[b] is not None
    )
    print(f"distinct pictures' originals: closest {distances[:5]} bits apart")


if __name__ == "__main__":
    main()
