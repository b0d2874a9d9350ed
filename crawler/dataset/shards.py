"""Dataset shards, WebDataset tars or Parquet files, in a local folder or at any fsspec URL.

``open_writer(fmt, output, shard_size)`` returns a ``SampleWriter``; each ``Sample`` is
one image's original bytes and its JSON-able ``meta``. A new shard starts every
``shard_size`` samples; shards are named ``00000.tar``, ``00001.tar``, ... (WebDataset)
or ``00000.parquet``, ... (Parquet).

``output`` is a local folder (created; it must be empty or absent) or an fsspec URL:
``s3://bucket/prefix``, ``memory://name``, ``file:///path`` (a local folder). An fsspec
destination must hold no ``*.tar``, ``*.parquet`` or ``README.md`` yet. S3 takes the
AWS settings of the environment through s3fs and botocore: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, and ``AWS_ENDPOINT_URL_S3`` (or
``AWS_ENDPOINT_URL``) for an S3-compatible server other than Amazon's, read whenever a
filesystem is made. (fsspec's own ``FSSPEC_S3_ENDPOINT_URL`` works too, but only if it
is set before fsspec is imported: fsspec reads its ``FSSPEC_*`` variables once, then.)

The guarantee: a shard is complete or absent. Locally (and on ``memory://``) a shard is
written to ``NAME.partial`` and renamed when it is complete. On an object store (s3fs,
gcsfs, adlfs: fsspec's buffered files) the object appears only when its upload
completes, as the file closes. ``abort()`` removes the shard being written (and
discards its upload); the complete shards before it stay.

WebDataset: each sample is two tar members, ``KEY.EXT`` (the image's bytes, unchanged)
and ``KEY.json`` (``meta``, every key of it), written by ``webdataset.TarWriter`` with a
fixed owner, mode and mtime, so the same samples make the same bytes. Parquet: one row
per sample, row groups of at most ``ROW_GROUP_ROWS`` rows or about ``ROW_GROUP_BYTES``
of images, so memory stays bounded. Its columns, ``META_COLUMNS`` (a meta key not among
them stays out of Parquet; one a sample lacks is null):

=================  =======  ==============================================================
column             type     meaning
=================  =======  ==============================================================
key                string   the sample's key, unique in the dataset ("000000042")
url                string   the image's URL
page               string   the page that showed it (its text comes from there)
kind               string   how the page refers to it (img, srcset, css, og:image, ...)
alt                string   the element's alt text
title              string   the element's title attribute
caption            string   the figure's caption
context            string   text near the image on the page
page_title         string   the page's title
lang               string   the page's language
width              int64    pixels across
height             int64    pixels down
bytes              int64    the image file's size
sha256             string   the image's SHA-256 (hex)
near_duplicate_of  string   sha256 of its near-duplicate group's representative, or null
opt_out            string   the opt-out signal it carries (kept with --ignore-opt-out)
content_type       string   the Content-Type the server sent
descriptor         string   its srcset descriptor (2x, 640w)
variant_of         string   the URL of the image it is a variant of
references         int32    how many pages show it
extension          string   the image's file extension (jpg, png, ...)
image              binary   the image's bytes, unchanged
=================  =======  ==============================================================

Every column but ``key``, ``extension`` and ``image`` is nullable.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from crawler.errors import ConfigError
from crawler.urls import without_userinfo

FORMATS = ("webdataset", "parquet")
DEFAULT_SHARD_SIZE = 10_000
EXTENSIONS = ("jpg", "png", "gif", "webp", "bmp", "tiff", "avif", "svg")
ROW_GROUP_ROWS = 1_000
ROW_GROUP_BYTES = 64 * 1024 * 1024
# Names that mark a destination as holding a dataset already.
_DATASET_SUFFIXES = (".tar", ".parquet")
_CARD = "README.md"
_PARTIAL = ".partial"


def _column(name: str, kind: pa.DataType, meaning: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"description": meaning})


META_COLUMNS = pa.schema(
    [
        _column("key", pa.string(), "the sample's key, unique in the dataset", nullable=False),
        _column("url", pa.string(), "the image's URL"),
        _column("page", pa.string(), "the page that showed it (its text comes from there)"),
        _column("kind", pa.string(), "how the page refers to it (img, srcset, css, ...)"),
        _column("alt", pa.string(), "the element's alt text"),
        _column("title", pa.string(), "the element's title attribute"),
        _column("caption", pa.string(), "the figure's caption"),
        _column("context", pa.string(), "text near the image on the page"),
        _column("page_title", pa.string(), "the page's title"),
        _column("lang", pa.string(), "the page's language"),
        _column("width", pa.int64(), "pixels across"),
        _column("height", pa.int64(), "pixels down"),
        _column("bytes", pa.int64(), "the image file's size"),
        _column("sha256", pa.string(), "the image's SHA-256 (hex)"),
        _column("near_duplicate_of", pa.string(), "sha256 of its group's representative"),
        _column("opt_out", pa.string(), "the opt-out signal it carries, if kept"),
        _column("content_type", pa.string(), "the Content-Type the server sent"),
        _column("descriptor", pa.string(), "its srcset descriptor (2x, 640w)"),
        _column("variant_of", pa.string(), "the URL of the image it is a variant of"),
        _column("references", pa.int32(), "how many pages show it"),
        _column("extension", pa.string(), "the image's file extension", nullable=False),
        _column("image", pa.binary(), "the image's bytes, unchanged", nullable=False),
    ]
)
# The columns a sample's meta fills.
_META_NAMES = tuple(
    name for name in META_COLUMNS.names if name not in ("key", "extension", "image")
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One image of the dataset: ``key`` unique in it (digits), ``extension`` one of
    ``EXTENSIONS``, ``image`` the original bytes, ``meta`` JSON-able fields."""

    key: str
    extension: str
    image: bytes
    meta: dict[str, Any]


@dataclass(frozen=True)
class ShardInfo:
    """A complete shard: its file name, its samples and its size in bytes."""

    name: str
    samples: int
    bytes: int


class SampleWriter(Protocol):
    """Writes samples into shards, each complete or absent."""

    def write(self, sample: Sample) -> None:
        """Add ``sample`` to the current shard; start a new one every ``shard_size``."""

    def close(self) -> list[ShardInfo]:
        """Complete the last shard; every shard written, in order."""

    def abort(self) -> None:
        """Remove the shard being written (never raises); the complete ones stay."""


def open_writer(fmt: str, output: str, shard_size: int = DEFAULT_SHARD_SIZE) -> SampleWriter:
    """A writer of ``fmt`` shards into ``output``, a local folder (created; empty or absent)
    or an fsspec URL holding no dataset yet; ``ConfigError`` when it cannot be used."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if shard_size <= 0:
        raise ConfigError(f"the shard size must be more than 0, not {shard_size}")
    destination = _Destination.at(output)
    destination.check_empty()
    destination.make()
    suffix, shard = _SHARD_TYPES[fmt]
    return _ShardWriter(destination, suffix, shard, shard_size)


def write_text(output: str, name: str, text: str) -> None:
    """Write ``text`` (UTF-8) as the file ``name`` in ``output``, complete or absent."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a plain file name: {name!r}")
    destination = _Destination.at(output)
    destination.make()
    pending = destination.create(name)
    try:
        pending.write(text.encode("utf-8"))
        pending.commit()
    except BaseException:
        pending.discard()
        raise


# -- where shard files go --------------------------------------------------------------


class _Counted:
    """A writable file that counts the bytes written through it. Once ``detach``-ed it
    drops what is written: an abandoned encoder's finalizer (``ParquetWriter.__del__``,
    tarfile's ``_Stream.__del__``) ends its file then, and must not reach a discarded one."""

    def __init__(self, file: BinaryIO) -> None:
        self.file: BinaryIO | None = file
        self.written = 0

    def write(self, data: bytes) -> int:
        if self.file is not None:
            self.file.write(data)
            self.written += len(data)
        return len(data)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def detach(self) -> None:
        self.file = None

    @property
    def closed(self) -> bool:
        return False


class _Pending:
    """One file being written: visible under its final name only after ``commit``."""

    def __init__(self, fs: Any, path: str, renames: bool) -> None:
        self.fs, self.path, self.renames = fs, path, renames
        self.written_to = path + _PARTIAL if renames else path
        self.file = fs.open(self.written_to, "wb")
        self.counted = _Counted(self.file)

    def write(self, data: bytes) -> None:
        self.counted.write(data)

    def commit(self) -> int:
        """Make the file visible under its final name, complete; its size."""
        if self.renames:
            self.file.flush()
            with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
                os.fsync(self.file.fileno())  # a local file: on disk before its rename
        self.file.close()  # an object store's upload completes here
        if self.renames:
            self.fs.mv(self.written_to, self.path)
        return self.counted.written

    def discard(self) -> None:
        """Drop the file and its upload; never raises (it runs while an error unwinds)."""
        self.counted.detach()
        with contextlib.suppress(Exception):
            discard = getattr(self.file, "discard", None)
            if self.renames or discard is None:
                self.file.close()
            else:
                discard()  # s3fs: aborts the multipart upload
                self.file.closed = True  # else closing it (even by __del__) uploads it
        with contextlib.suppress(Exception):
            if self.fs.exists(self.written_to):
                self.fs.rm(self.written_to)


@dataclass
class _Destination:
    """A folder in a filesystem: where shards go, and whether files appear as written
    (local, memory: renamed when complete) or only when their upload completes."""

    fs: Any
    root: str
    shown: str  # the output as messages show it: no user or password
    local: bool
    renames: bool

    @classmethod
    def at(cls, output: str) -> _Destination:
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.implementations.memory import MemoryFileSystem

        shown = without_userinfo(output)
        if "://" not in output:
            fs: Any = LocalFileSystem()
            root = os.path.abspath(output)
        else:
            fs, root = _url_to_fs(output, shown)
        local = isinstance(fs, LocalFileSystem)
        renames = local or isinstance(fs, MemoryFileSystem)
        return cls(fs, root.rstrip("/") or root, shown, local, renames)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def check_empty(self) -> None:
        """ConfigError unless the destination can take a new dataset."""
        taken = ConfigError(f"{self.shown} already holds a dataset; choose an empty destination")
        if self.local:
            if self.fs.exists(self.root) and not self.fs.isdir(self.root):
                raise ConfigError(f"{self.shown} is a file, not a folder")
            if self.fs.isdir(self.root) and self.fs.ls(self.root, detail=False):
                raise taken
            return
        if not self.renames:
            bucket = self.root.split("/", 1)[0]
            if not self._reached(lambda: self.fs.exists(bucket)):
                raise ConfigError(
                    f"{self.shown}: the bucket {bucket!r} does not exist "
                    "(or these credentials cannot see it)"
                )
        self.fs.invalidate_cache(self.root)
        names = self._reached(lambda: self._names())
        if any(name == _CARD or name.endswith(_DATASET_SUFFIXES) for name in names):
            raise taken

    def make(self) -> None:
        if self.local:
            try:
                self.fs.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create {self.shown}: {exc.strerror or exc}") from exc

    def create(self, name: str) -> _Pending:
        return _Pending(self.fs, self.path(name), self.renames)

    def _names(self) -> list[str]:
        try:
            listed = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        return [str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed]

    def _reached(self, call: Callable[[], Any]) -> Any:
        """``call()``; its failure to reach the store as a one-line ConfigError."""
        try:
            return call()
        except Exception as exc:
            raise ConfigError(f"{self.shown}: cannot reach it: {_one_line(exc)}") from exc


def _url_to_fs(output: str, shown: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(output)
    except (ValueError, ImportError, OSError) as exc:
        protocol = output.split("://", 1)[0]
        raise ConfigError(
            f"{shown}: cannot open {protocol}:// destinations: {_one_line(exc)}"
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


# -- the two shard formats -------------------------------------------------------------


class _Shard(Protocol):
    """One shard's encoding onto an open file; ``finish`` writes what ends it."""

    def add(self, sample: Sample) -> None: ...

    def finish(self) -> None: ...


class _TarShard:
    """A WebDataset tar: ``KEY.EXT`` and ``KEY.json`` per sample, reproducible headers."""

    def __init__(self, file: _Counted) -> None:
        from webdataset import TarWriter

        # A file object is the caller's: TarWriter's close ends the tar, not the file.
        self.tar = TarWriter(
            file, user="crawler", group="crawler", mode=0o444, mtime=0, encoder=False
        )

    def add(self, sample: Sample) -> None:
        meta = json.dumps(sample.meta, ensure_ascii=False, sort_keys=True)
        self.tar.write(
            {"__key__": sample.key, sample.extension: sample.image, "json": meta.encode()}
        )

    def finish(self) -> None:
        self.tar.close()


class _ParquetShard:
    """A Parquet file of ``META_COLUMNS``, rows buffered into bounded row groups."""

    def __init__(self, file: _Counted) -> None:
        # A Python file object is the caller's: the writer's close leaves it open.
        self.writer = pq.ParquetWriter(
            file,
            META_COLUMNS,
            use_dictionary=[name for name in META_COLUMNS.names if name != "image"],
            write_statistics=[name for name in META_COLUMNS.names if name != "image"],
        )
        self.rows: dict[str, list[Any]] = {name: [] for name in META_COLUMNS.names}
        self.buffered = 0

    def add(self, sample: Sample) -> None:
        row = _row(sample)
        for name, value in row.items():
            self.rows[name].append(value)
        self.buffered += len(sample.image)
        if len(self.rows["key"]) >= ROW_GROUP_ROWS or self.buffered >= ROW_GROUP_BYTES:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self.writer.close()

    def _flush(self) -> None:
        count = len(self.rows["key"])
        if count:
            table = pa.Table.from_pydict(self.rows, schema=META_COLUMNS)
            self.writer.write_table(table, row_group_size=count)
        self.rows = {name: [] for name in META_COLUMNS.names}
        self.buffered = 0


def _row(sample: Sample) -> dict[str, Any]:
    """The sample's Parquet row; ValueError when a meta value does not fit its column."""
    row: dict[str, Any] = {"key": sample.key}
    for name in _META_NAMES:
        value = sample.meta.get(name)
        kind = META_COLUMNS.field(name).type
        wanted: type = str if pa.types.is_string(kind) else int
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise ValueError(
                f"sample {sample.key}: {name} must be {wanted.__name__} or None, "
                f"not {type(value).__name__}"
            )
        row[name] = value
    row["extension"] = sample.extension
    row["image"] = sample.image
    return row


_SHARD_TYPES: dict[str, tuple[str, Callable[[_Counted], _Shard]]] = {
    "webdataset": (".tar", _TarShard),
    "parquet": (".parquet", _ParquetShard),
}


# -- the writer ------------------------------------------------------------------------


def _check(sample: Sample, previous: str | None) -> None:
    """ValueError unless the sample's key and extension make safe tar member names."""
    key = sample.key
    if not key or not key.isprintable() or any(char in key for char in "/\\. "):
        raise ValueError(f"unsafe sample key {key!r}: no '/', '\\', '.', space or empty")
    if key == previous:
        raise ValueError(f"sample key {key!r} repeated")  # its members would merge
    if sample.extension not in EXTENSIONS:
        raise ValueError(f"sample {key}: extension {sample.extension!r} not in {EXTENSIONS}")


class _ShardWriter:
    """The ``SampleWriter``: one shard at a time, a new one every ``shard_size`` samples."""

    def __init__(
        self,
        destination: _Destination,
        suffix: str,
        shard: Callable[[_Counted], _Shard],
        shard_size: int,
    ) -> None:
        self.destination, self.suffix, self.shard, self.shard_size = (
            destination,
            suffix,
            shard,
            shard_size,
        )
        self.done: list[ShardInfo] = []
        self.pending: _Pending | None = None
        self.current: _Shard | None = None
        self.samples = 0
        self.previous: str | None = None
        self.closed = False

    def write(self, sample: Sample) -> None:
        if self.closed:
            raise ValueError("write to a closed writer")
        _check(sample, self.previous)
        if self.current is None:
            self.pending = self.destination.create(f"{len(self.done):05d}{self.suffix}")
            self.current = self.shard(self.pending.counted)
        self.current.add(sample)
        self.previous = sample.key
        self.samples += 1
        if self.samples == self.shard_size:
            self._finish()

    def close(self) -> list[ShardInfo]:
        if not self.closed:
            self._finish()
            self.closed = True
        return list(self.done)

    def abort(self) -> None:
        if self.pending is not None:
            self.pending.discard()
        self.pending, self.current, self.closed = None, None, True

    def __del__(self) -> None:
        # Dropped without close or abort (a caller's bug, an error unwinding): abort,
        # else the object store file's own finalizer would upload the partial shard.
        if not getattr(self, "closed", True):
            self.abort()

    def _finish(self) -> None:
        if self.current is None or self.pending is None:
            return
        self.current.finish()
        size = self.pending.commit()
        name = self.pending.path.rsplit("/", 1)[-1]
        self.done.append(ShardInfo(name, self.samples, size))
        self.pending, self.current, self.samples = None, None, 0
