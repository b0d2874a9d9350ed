"""Near-duplicate groups of stored images, by perceptual hash (``imagehash.phash`` on Pillow).

``perceptual_hash`` turns an image into a 64-bit int; two images whose hashes are at most
``max_distance`` bits apart (``hamming``) are near-duplicates, and ``near_duplicate_groups``
closes that relation transitively and names each group's largest image its representative.

Memory: ``near_duplicate_groups`` holds one small record per image (the ``Hashed`` item, its
index in a few int arrays and its union-find parent), plus one band-key array of 8 bytes per
distinct hash at a time; a bucket's comparisons run in blocks of at most ``_BLOCK_CELLS``
distances.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import imagehash
import numpy as np
from PIL import Image, ImageOps

from crawler.web.verify import AVIF_READABLE, PILLOW_FAILURES, PILLOW_FORMATS

HASH_BITS = 64
# Measured (scripts/neardup_bench.py, defaults: 300 generated pictures x 8 copies): precision
# 1.000 at every distance up to 10, 0.979 at 12, 0.845 at 14; recall 0.795 at 6, 0.898 at 8
# (at 8: 1.00 for resized, re-encoded and PNG copies, 0.96 for a 2% crop, 0.64 for a 5% crop).
# 8 is the highest recall that kept a margin: the closest distinct pictures were 14 bits
# apart, and real collections (bursts, templated product shots) hold closer ones.
DEFAULT_MAX_DISTANCE = 8

# The formats the crawler stores (``web.verify``); anything else is not an image to hash
# (and some Pillow plugins, e.g. EPS, would run external programs).
_FORMATS = sorted({f for f in PILLOW_FORMATS.values() if f != "AVIF" or AVIF_READABLE})
# JPEGs are decoded at 1/2, 1/4 or 1/8 scale, keeping at least this size: phash looks at a
# 32x32 downscale, so decoding more pixels only costs time.
_DRAFT_SIZE = (64, 64)
# Distances computed per numpy block when comparing one bucket (about 8 MB of uint64).
_BLOCK_CELLS = 1 << 20


def perceptual_hash(source: bytes | IO[bytes]) -> int | None:
    """The 64-bit pHash (``imagehash.phash``, hash_size 8) of an image, None if unreadable.

    The first frame of an animation is hashed; transparency is composited onto white, the
    EXIF orientation applied, 16-bit and float images scaled to 8 bits. None for bytes
    Pillow cannot read as a stored format, a truncated file, or one over Pillow's pixel
    limit (``Image.MAX_IMAGE_PIXELS``; its warning band counts as over). Pillow's warnings
    are silenced around the call (process-wide: not for concurrent threads).
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(handle, formats=_FORMATS) as image:
                image.seek(0)
                image.draft("L", _DRAFT_SIZE)  # a no-op except for JPEG
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                bits = imagehash.phash(_grayscale(image), hash_size=8).hash
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return None
        except PILLOW_FAILURES:
            return None
    return int.from_bytes(np.packbits(bits.flatten()).tobytes(), "big")


def _grayscale(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L"):
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.size and pixels.max() > 255:
            pixels = pixels / 257  # 16-bit samples
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        # Transparent pixels keep whatever colour the encoder left (often black): show
        # them as a page would, on white.
        rgba = image.convert("RGBA")
        rgba = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        return rgba.convert("L")
    if image.mode in ("RGB", "P"):
        return image.convert("L")
    return image.convert("RGB").convert("L")  # CMYK, YCbCr, LAB ...


def hamming(a: int, b: int) -> int:
    """How many of the bits of ``a`` and ``b`` differ."""
    return (a ^ b).bit_count()


@dataclass(frozen=True, slots=True)
class Hashed:
    """One stored image: its content hash, perceptual hash, width*height and file size."""

    sha256: str
    phash: int
    area: int
    bytes: int


def near_duplicate_groups(
    items: Iterable[Hashed], max_distance: int = DEFAULT_MAX_DISTANCE
) -> dict[str, str]:
    """sha256 -> sha256 of its group's representative, for every image in a group.

    Two images are linked when their hashes are at most ``max_distance`` bits apart; a
    group is a connected set of two or more linked images (union-find, so A~B and B~C
    group A and C even if A and C are farther apart). The representative is the largest
    image (area, then bytes, then the smallest sha256) and maps to itself; images linked
    to no other are absent. Items sharing a sha256 are one image (the first is kept).

    Exact, never sampled: the 64 bits are split into ``max_distance + 1`` bands, and two
    hashes within the distance agree exactly on at least one band (pigeonhole), so only
    hashes sharing a (band, value) bucket are compared. Images with equal hashes are
    linked first and compared as one. Cost for spread-out hashes: about
    ``n**2 / 2 * sum(2**-width)`` comparisons (bands of 64/(d+1) bits; n**2/150 at d=6,
    done by numpy at some 10**8-10**9 a second), still quadratic in n but with a small
    constant. A bucket of k look-alike hashes (many near-blank images differing in a few
    bits) costs k**2/2 comparisons in full, in blocks of bounded memory: slower, never
    capped. Each linked pair then costs a Python union: fine while pairs are few (20,000
    random hashes: 0.2 s at d=6, 1 s at d=12), but at d=32 half of all random pairs link
    (20,000 hashes: 11 minutes).
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, not {max_distance}")
    images = list({item.sha256: item for item in reversed(list(items))}.values())[::-1]
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)

    first_with_hash: dict[int, int] = {}
    for index, image in enumerate(images):
        union(first_with_hash.setdefault(image.phash, index), index)
    owners = list(first_with_hash.values())
    values = np.array([images[i].phash for i in owners], dtype=np.uint64)
    for i, j in _close_pairs(values, max_distance):
        union(owners[i], owners[j])

    members: dict[int, list[Hashed]] = {}
    for index, image in enumerate(images):
        members.setdefault(find(index), []).append(image)
    groups: dict[str, str] = {}
    for group in members.values():
        if len(group) > 1:
            best = min(group, key=lambda image: (-image.area, -image.bytes, image.sha256))
            groups.update((image.sha256, best.sha256) for image in group)
    return groups


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of each of the min(d + 1, 64) bands covering the hash's bits."""
    count = min(max_distance + 1, HASH_BITS)
    width, extra = divmod(HASH_BITS, count)
    bands, shift = [], 0
    for band in range(count):
        bits = width + (band < extra)
        bands.append((shift, (1 << bits) - 1))
        shift += bits
    return bands


def _close_pairs(values: np.ndarray, max_distance: int) -> Iterator[tuple[int, int]]:
    """Index pairs (i < j) of distinct hashes at most ``max_distance`` bits apart; a pair
    may come more than once (once per band they agree on)."""
    if len(values) < 2:
        return
    if max_distance >= HASH_BITS:
        buckets = [np.arange(len(values))]
        yield from _pairs_within(values, buckets, max_distance)
        return
    for shift, mask in _bands(max_distance):
        keys = (values >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        buckets = [order[s:e] for s, e in zip(starts, ends, strict=True) if e - s > 1]
        yield from _pairs_within(values, buckets, max_distance)


def _pairs_within(
    values: np.ndarray, buckets: list[np.ndarray], max_distance: int
) -> Iterator[tuple[int, int]]:
    for bucket in buckets:
        bucket = np.sort(bucket)
        hashes = values[bucket]
        size = len(bucket)
        rows = max(1, _BLOCK_CELLS // size)
        for low in range(0, size, rows):
            block = hashes[low : low + rows]
            distances = _popcount(block[:, None] ^ hashes[None, low:])
            row, col = np.nonzero(distances <= max_distance)
            keep = col > row  # column index counts from ``low`` too: upper triangle only
            for i, j in zip(bucket[low + row[keep]], bucket[low + col[keep]], strict=True):
                yield int(i), int(j)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy 2.0
        return np.bitwise_count(words)
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1)


_BYTE_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)
