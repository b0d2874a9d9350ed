"""The manifest as a table: one row per image URL, as CSV or JSON Lines.

Rows carry the manifest's fields in a fixed order (``COLUMNS``), with the image's
dimensions filled in from the stored file when an older manifest lacks them, and
``file``: where the stored file is when it is there (its absolute path, or its
object's URL in the nodes' store: ``images.py``). The manifest is streamed,
so a manifest of any length is exported in constant memory. ``report`` reads the
manifest with the same helpers.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, TextIO

from PIL import Image

from crawler.errors import ConfigError, StateError
from crawler.output.images import ImageFiles
from crawler.output.manifest import MANIFEST_NAME, ManifestRecords
from crawler.records import STORED
from crawler.web.verify import PILLOW_FAILURES

# The CSV header and the key order of each JSON line; a field the manifest lacks is
# empty (CSV) or null (JSON).
COLUMNS = (
    "url",
    "page",
    "kind",
    "outcome",
    "status",
    "error",
    "attempts",
    "bytes",
    "content_type",
    "width",
    "height",
    "sha256",
    "path",
    "file",
    "node",
    "elapsed",
    "opt_out",
)
FORMATS = ("csv", "jsonl")


def manifest_records(out: Path, action: str) -> ManifestRecords:
    """The manifest of OUT, or a StateError saying there is nothing to ``action``."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise StateError(f"no {MANIFEST_NAME} in {out}: nothing to {action}")
    return ManifestRecords(path)


def stored_file(out: Path, relative: Any) -> str | None:
    """The absolute path of the stored file a record's ``path`` names under OUT, if it
    exists (``ImageFiles.locate`` of OUT: nothing outside it)."""
    return ImageFiles(out).locate(relative)


def image_size(path: str | IO[bytes]) -> tuple[int, int] | None:
    """Width and height from the file's header (pixels are not decoded), or None."""
    try:
        # catch_warnings changes the whole process's filters: fine here, since only
        # ``crawler export`` calls this, on its one thread.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.size
    except (*PILLOW_FAILURES, Image.DecompressionBombError):
        return None


def export_row(images: ImageFiles | Path, record: dict[str, Any]) -> dict[str, Any]:
    """A manifest record as an export row: ``COLUMNS`` in order, dimensions joined;
    ``file`` is where the image is (``images``: OUT's folder, or ``ImageFiles``)."""
    if isinstance(images, Path):
        images = ImageFiles(images)
    row = {column: record.get(column) for column in COLUMNS}
    file = images.locate(record.get("path")) if record.get("outcome") == STORED else None
    row["file"] = file
    if file and (row["width"] is None or row["height"] is None):
        try:
            with images.open(file) as handle:
                size = image_size(handle)
        except OSError:
            size = None
        if size:
            row["width"], row["height"] = size
    return row


def export_manifest(
    out: Path, fmt: str, dest: TextIO | Path | None, images: str | None = None
) -> int:
    """Write every manifest record of OUT as ``fmt`` (csv or jsonl); rows written.

    ``dest`` is an open text stream, a file to create, or None for standard output;
    ``images`` where the stored images are, when not under OUT (a folder, or the nodes'
    object store, ``s3://BUCKET/PREFIX``).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    records = manifest_records(out, "export")
    return export_records(records, fmt, dest, ImageFiles(out, images))


def export_records(
    records: Iterable[dict[str, Any]], fmt: str, dest: TextIO | Path | None, files: ImageFiles
) -> int:
    """``export_manifest`` of any records (a shared crawl's, say); rows written."""
    if dest is None:
        return _write_rows(files, records, fmt, sys.stdout)
    if isinstance(dest, Path):
        try:
            handle = dest.open("w", encoding="utf-8", newline="")
        except OSError as error:
            raise ConfigError(f"cannot write {dest}: {error.strerror}") from error
        with handle:
            return _write_rows(files, records, fmt, handle)
    return _write_rows(files, records, fmt, dest)


def _write_rows(
    files: ImageFiles, records: Iterable[dict[str, Any]], fmt: str, handle: TextIO
) -> int:
    writer = csv.writer(handle) if fmt == "csv" else None
    if writer:
        writer.writerow(COLUMNS)
    count = 0
    for record in records:
        row = export_row(files, record)
        if writer:
            writer.writerow(row.values())
        else:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
