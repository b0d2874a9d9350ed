"""``crawler export --format webdataset|parquet``: a crawl's stored images as dataset
shards, each sample the image's bytes and its text (``output.references``), with the
dataset card beside them.

A sample is one stored image URL. Its text is from the first page showing it that no
opt-out marks (the manifest's page first); ``references`` counts the pages showing
it. Opt-outs (``web.optout``): an image is opted out when its own response or any
page showing it says so; opted-out images are left out of the shards (and counted in
the card) unless ``ignore_opt_out``. ``near_duplicate_of`` (``dataset.neardup``): the
sha256 of the representative of the image's near-duplicate group, None for an image
in no group.

Memory: one small record per stored image and one per image URL of the references
(``read_references``); images are read one at a time (twice: hashed, then written).
"""

from __future__ import annotations

import datetime
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.config import per_core
from crawler.dataset.card import CardFigures, dataset_card
from crawler.dataset.neardup import (
    DEFAULT_MAX_DISTANCE,
    Hashed,
    near_duplicate_groups,
    perceptual_hash,
)
from crawler.dataset.shards import EXTENSIONS, FORMATS, Sample, open_writer, write_text
from crawler.errors import ConfigError
from crawler.output.export import manifest_records
from crawler.output.images import ImageFiles
from crawler.output.references import ImageReferences, read_references
from crawler.records import STORED, error_code
from crawler.urls import host_of

CARD_NAME = "README.md"
# Images from which hashing goes to worker processes (starting them costs ~1 s).
POOL_FROM = 2000
# The stored files' extensions as WebDataset keys name them.
_EXTENSIONS = {"tif": "tiff"}
# Text fields a sample takes from its reference line.
_TEXT_FIELDS = ("alt", "title", "caption", "context", "page_title", "lang", "descriptor")


@dataclass
class _Stored:
    """A stored image the export will write: its manifest record and where it is."""

    record: dict[str, Any]
    location: str
    refs: ImageReferences | None
    opt_out: str | None


@dataclass
class DatasetExport:
    """What an export wrote (the card's figures) and how long it took."""

    figures: CardFigures
    seconds: float
    hashing_seconds: float = 0.0

    def line(self) -> str:
        figures = self.figures
        rate = figures.samples / self.seconds if self.seconds else 0.0
        return (
            f"exported {figures.samples} samples in {len(figures.shards)} {figures.format} "
            f"shards ({rate:,.0f} samples/s); {figures.opted_out_left_out} opted out left "
            f"out; {figures.near_duplicate_groups} near-duplicate groups"
        )


def export_dataset(
    out: Path,
    fmt: str,
    output: str,
    shard_size: int,
    images: str | None = None,
    ignore_opt_out: bool = False,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    command: str = "",
    hasher: Callable[[bytes], int | None] = perceptual_hash,
    processes: int = 0,
) -> DatasetExport:
    """Write OUT's stored images as ``fmt`` shards to ``output`` (a folder or an fsspec
    URL) and the dataset card beside them; see the module for what a sample holds.
    Shards are whole or absent: a failure part way removes the one being written.
    Images in a folder are hashed in ``processes`` workers (0: one per core)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}: choose one of {', '.join(FORMATS)}")
    started = time.monotonic()
    records = manifest_records(out, "export")
    references = read_references(out)
    files = ImageFiles(out, images)
    figures = CardFigures(format=fmt, shard_size=shard_size, max_distance=max_distance)
    figures.ignored_opt_out = ignore_opt_out
    figures.command = command
    stored: list[_Stored] = []
    for record in records:
        url = record.get("url")
        refs = references.get(url) if isinstance(url, str) else None
        opt_out = _opt_out_of(record, refs)
        if record.get("outcome") != STORED:
            figures.failed[error_code(record.get("error"))] += 1
            if opt_out:
                figures.opted_out_left_out += 1
                figures.opt_out_signals[opt_out] += 1
            continue
        if opt_out and not ignore_opt_out:
            figures.opted_out_left_out += 1
            figures.opt_out_signals[opt_out] += 1
            continue
        location = files.locate(record.get("path"))
        if location is None:
            figures.skipped["file missing"] += 1
            continue
        extension = location.rsplit(".", 1)[-1].lower()
        if _EXTENSIONS.get(extension, extension) not in EXTENSIONS:
            figures.skipped[f".{extension} (not a dataset image type)"] += 1
            continue
        stored.append(_Stored(record, location, refs, opt_out))
    export = DatasetExport(figures, 0.0)
    writer = open_writer(fmt, output, shard_size)  # (a destination it refuses: before hashing)
    try:
        hashing = time.monotonic()
        hashed = _hashes(stored, files, hasher, per_core(processes))
        groups = near_duplicate_groups(hashed, max_distance)
        export.hashing_seconds = time.monotonic() - hashing
        figures.near_duplicate_images = len(groups)
        figures.near_duplicate_groups = len(set(groups.values()))
        for image in stored:
            try:
                with files.open(image.location) as handle:
                    data = handle.read()
            except OSError:
                figures.skipped["unreadable"] += 1
                continue
            sample = _sample(figures.samples, image, data, groups)
            writer.write(sample)
            figures.samples += 1
            figures.hosts[host_of(image.record["url"])] += 1
            figures.total_bytes += len(data)
            if not (sample.meta.get("alt") or sample.meta.get("caption")):
                figures.images_without_text += 1
        figures.shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    figures.created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    write_text(output, CARD_NAME, dataset_card(figures))
    export.seconds = time.monotonic() - started
    return export


def _opt_out_of(record: dict[str, Any], refs: ImageReferences | None) -> str | None:
    """The image's opt-out signal: its manifest record's (its own response's, or the page
    a dataset crawl refused it for: ``board.final_record``), or any page's showing it."""
    own = record.get("opt_out")
    if isinstance(own, str) and own:
        return own
    return refs.opt_out if refs is not None else None


def _hashes(
    stored: list[_Stored],
    files: ImageFiles,
    hasher: Callable[[bytes], int | None],
    processes: int,
) -> list[Hashed]:
    """The perceptual hash of each distinct stored image: in ``processes`` worker
    processes for files in a folder (decoding is most of an export's time), else here."""
    unique: dict[str, _Stored] = {}
    for image in stored:
        sha256 = image.record.get("sha256")
        if isinstance(sha256, str):
            unique.setdefault(sha256, image)
    images = list(unique.values())
    values: list[int | None] | None = None
    if (
        files.store is None
        and hasher is perceptual_hash
        and processes > 1
        and len(images) > POOL_FROM
    ):
        values = _hash_in_workers([image.location for image in images], processes)
    if values is None:
        values = [_hash_one(files, image.location, hasher) for image in images]
    hashed: list[Hashed] = []
    for image, value in zip(images, values, strict=True):
        if value is not None:
            record = image.record
            width, height = record.get("width") or 0, record.get("height") or 0
            size = record.get("bytes") or 0
            hashed.append(Hashed(record["sha256"], value, int(width) * int(height), int(size)))
    return hashed


def _hash_in_workers(paths: list[str], processes: int) -> list[int | None] | None:
    """The hash of each file, in worker processes; None when they could not run (the
    caller then hashes here)."""
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            return list(pool.map(_hash_file, paths, chunksize=32))
    except (BrokenProcessPool, OSError, RuntimeError):
        return None


def _hash_one(files: ImageFiles, location: str, hasher: Callable[[bytes], int | None]):
    try:
        with files.open(location) as handle:
            return hasher(handle.read())
    except OSError:
        return None  # counted when it is written (or not)


def _hash_file(path: str) -> int | None:
    """In a worker: the perceptual hash of one file."""
    try:
        with open(path, "rb") as handle:
            return perceptual_hash(handle.read())
    except OSError:
        return None


def _sample(index: int, image: _Stored, data: bytes, groups: dict[str, str]) -> Sample:
    record = image.record
    row = image.refs.row if image.refs is not None else {}
    meta: dict[str, Any] = {
        "url": record["url"],
        "page": row.get("page") or record.get("page"),
        "kind": record.get("kind"),
    }
    for name in _TEXT_FIELDS:
        meta[name] = row.get(name)
    meta.update(
        width=record.get("width"),
        height=record.get("height"),
        bytes=record.get("bytes"),
        content_type=record.get("content_type"),
        sha256=record.get("sha256"),
        near_duplicate_of=groups.get(record.get("sha256") or ""),
        opt_out=image.opt_out,
        references=len(image.refs.pages) if image.refs is not None else 1,
    )
    extension = image.location.rsplit(".", 1)[-1].lower()
    return Sample(f"{index:09d}", _EXTENSIONS.get(extension, extension), data, meta)
