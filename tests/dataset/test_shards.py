"""Shards written for real, to a folder, ``memory://`` and a moto S3 server, and read
back with the libraries a dataset's users read them with: webdataset, tarfile, pyarrow."""

from __future__ import annotations

import gc
import io
import json
import random
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from crawler.dataset import shards
from crawler.dataset.shards import (
    META_COLUMNS,
    Sample,
    ShardInfo,
    open_writer,
    write_text,
)
from crawler.errors import ConfigError
from tests.support.s3 import client, moto_s3, objects

BUCKET = "datasets"
EXTENSIONS = ("jpg", "png", "svg", "webp", "gif")


def samples(count: int = 25, seed: int = 1) -> list[Sample]:
    """Samples with random image bytes, some meta keys missing and one not in the schema."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        meta = {
            "url": f"https://host{index % 3}.example/img/{index}.bin",
            "page": f"https://host{index % 3}.example/page/{index // 4}",
            "alt": f"picture {index}: ünïcode" if index % 2 else None,
            "width": 10 + index,
            "height": 20 + index,
            "sha256": f"{index:064x}",
            "references": index % 4 + 1,
            "extra_field": {"kept": "in json only"},
        }
        if index % 5 == 0:
            meta["near_duplicate_of"] = f"{index:064x}"
        image = rng.randbytes(rng.randrange(1, 3000))
        made.append(Sample(f"{index:09d}", EXTENSIONS[index % len(EXTENSIONS)], image, meta))
    return made


def write_all(fmt: str, output: str, items: list[Sample], shard_size: int = 10) -> list[ShardInfo]:
    writer = open_writer(fmt, output, shard_size)
    for sample in items:
        writer.write(sample)
    return writer.close()


def check_infos(infos: list[ShardInfo], suffix: str) -> None:
    assert [info.name for info in infos] == [f"0000{n}.{suffix}" for n in range(3)]
    assert [info.samples for info in infos] == [10, 10, 5]


def check_tar(data: bytes, expected: list[Sample]) -> None:
    """The tar's members, in order, with the stdlib: KEY.EXT and KEY.json per sample."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [member.name for member in members]
        assert names == [
            name
            for sample in expected
            for name in sorted([f"{sample.key}.{sample.extension}", f"{sample.key}.json"])
        ]
        assert {(m.mtime, m.mode, m.uid, m.gid, m.uname) for m in members} == {
            (0, 0o444, 0, 0, "crawler")
        }
        for sample in expected:
            image = tar.extractfile(f"{sample.key}.{sample.extension}")
            assert image is not None and image.read() == sample.image
            meta = tar.extractfile(f"{sample.key}.json")
            assert meta is not None and json.loads(meta.read()) == sample.meta


def check_webdataset(urls: list[str], expected: list[Sample]) -> None:
    read = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [item["__key__"] for item in read] == [sample.key for sample in expected]
    for item, sample in zip(read, expected, strict=True):
        assert item[sample.extension] == sample.image
        assert json.loads(item["json"]) == sample.meta


def check_parquet(tables: list, expected: list[Sample]) -> None:
    rows = [row for table in tables for row in table.to_pylist()]
    assert [row["key"] for row in rows] == [sample.key for sample in expected]
    for row, sample in zip(rows, expected, strict=True):
        assert row["image"] == sample.image
        assert row["extension"] == sample.extension
        assert "extra_field" not in row
        for name in META_COLUMNS.names:
            if name not in ("key", "extension", "image"):
                assert row[name] == sample.meta.get(name), name  # absent -> null


def test_webdataset_shards_read_back_identical(tmp_path: Path) -> None:
    items = samples()
    out = tmp_path / "out"
    infos = write_all("webdataset", str(out), items)

    check_infos(infos, "tar")
    assert sorted(p.name for p in out.iterdir()) == [info.name for info in infos]
    assert [info.bytes for info in infos] == [(out / info.name).stat().st_size for info in infos]
    check_webdataset([str(out / info.name) for info in infos], items)
    for n, info in enumerate(infos):
        check_tar((out / info.name).read_bytes(), items[n * 10 : n * 10 + 10])

    # The same samples make the same bytes.
    again = tmp_path / "again"
    write_all("webdataset", str(again), items)
    assert [(again / i.name).read_bytes() for i in infos] == [
        (out / i.name).read_bytes() for i in infos
    ]


def test_parquet_shards_have_the_documented_schema(tmp_path: Path) -> None:
    items = samples()
    out = tmp_path / "out"
    infos = write_all("parquet", str(out), items)

    check_infos(infos, "parquet")
    assert [info.bytes for info in infos] == [(out / info.name).stat().st_size for info in infos]
    tables = [pq.read_table(out / info.name) for info in infos]
    for table in tables:
        assert table.schema.equals(META_COLUMNS, check_metadata=False)
        assert [f.nullable for f in table.schema] == [f.nullable for f in META_COLUMNS]
    check_parquet(tables, items)
    meaning = pq.read_schema(out / "00000.parquet").field("near_duplicate_of").metadata
    assert meaning and b"representative" in meaning[b"description"]


def test_the_docstring_table_lists_every_column() -> None:
    documented = [
        line.split()[0]
        for line in (shards.__doc__ or "").splitlines()
        if line and line.split()[0] in META_COLUMNS.names
    ]
    assert documented == META_COLUMNS.names


def test_parquet_row_groups_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "ROW_GROUP_ROWS", 4)
    items = samples()
    write_all("parquet", str(tmp_path / "out"), items)
    first = pq.ParquetFile(tmp_path / "out" / "00000.parquet").metadata
    assert [first.row_group(n).num_rows for n in range(first.num_row_groups)] == [4, 4, 2]

    monkeypatch.setattr(shards, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 1)  # every image fills a group
    write_all("parquet", str(tmp_path / "by-bytes"), items)
    assert pq.ParquetFile(tmp_path / "by-bytes" / "00002.parquet").metadata.num_row_groups == 5


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_abort_removes_the_partial_shard(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    writer = open_writer(fmt, str(out), 10)
    for sample in samples(15):
        writer.write(sample)
    suffix = "tar" if fmt == "webdataset" else "parquet"
    assert sorted(p.name for p in out.iterdir()) == [f"00000.{suffix}", f"00001.{suffix}.partial"]
    writer.abort()
    assert sorted(p.name for p in out.iterdir()) == [f"00000.{suffix}"]
    with pytest.raises(ValueError):
        writer.write(samples(1)[0])


def test_zero_samples_make_no_shard(tmp_path: Path) -> None:
    assert open_writer("parquet", str(tmp_path / "out")).close() == []
    assert list((tmp_path / "out").iterdir()) == []


def test_refuses_a_destination_that_holds_something(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds a dataset; choose an empty destination"):
        open_writer("webdataset", str(full))
    with pytest.raises(ConfigError, match="already holds a dataset"):
        open_writer("webdataset", full.as_uri())  # file:// is a local folder
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        open_writer("parquet", str(tmp_path / "a-file"))

    base = f"memory://refuse-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{base}/other/notes.txt", b"x")  # anything else is fine on a store
    open_writer("webdataset", f"{base}/other").abort()
    for name in ("00007.tar", "x.parquet", "README.md"):
        fs.pipe(f"{base}/{name}", b"x")
        with pytest.raises(ConfigError, match="already holds a dataset"):
            open_writer("parquet", base)
        fs.rm(f"{base}/{name}")
    fs.rm(base, recursive=True)


def test_wrong_settings_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset format 'csv': choose one of webdataset"):
        open_writer("csv", str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="more than 0"):
        open_writer("parquet", str(tmp_path / "out"), 0)
    for url in ("nosuch://bucket/x", "gcs://bucket/x"):
        with pytest.raises(ConfigError) as caught:
            open_writer("parquet", url)
        assert "\n" not in str(caught.value) and url.split(":")[0] in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        open_writer("parquet", "nosuch://user:hunter2@bucket/x")
    assert "hunter2" not in str(caught.value)


def test_refuses_unsafe_keys_and_extensions(tmp_path: Path) -> None:
    writer = open_writer("webdataset", str(tmp_path / "out"))
    for key in ("", "a/b", "a.b", "..", "a b", "a\\b"):
        with pytest.raises(ValueError, match="unsafe sample key"):
            writer.write(Sample(key, "jpg", b"x", {}))
    with pytest.raises(ValueError, match="extension"):
        writer.write(Sample("1", "exe", b"x", {}))
    writer.write(Sample("1", "jpg", b"x", {}))
    with pytest.raises(ValueError, match="repeated"):
        writer.write(Sample("1", "png", b"x", {}))
    writer.abort()

    parquet = open_writer("parquet", str(tmp_path / "parquet"))
    with pytest.raises(ValueError, match="width must be int"):
        parquet.write(Sample("1", "jpg", b"x", {"width": "10"}))
    parquet.abort()


def test_memory_destination(tmp_path: Path) -> None:
    items = samples()
    base = f"memory://ds-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        infos = write_all("webdataset", f"{base}/wds", items)
        check_infos(infos, "tar")
        local = []
        for info in infos:
            data = fs.cat(f"{base}/wds/{info.name}")
            assert len(data) == info.bytes
            (tmp_path / info.name).write_bytes(data)
            local.append(str(tmp_path / info.name))
        check_webdataset(local, items)
        assert not fs.glob(f"{base}/wds/*.partial")

        infos = write_all("parquet", f"{base}/pq", items)
        check_infos(infos, "parquet")
        tables = []
        for info in infos:
            with fsspec.open(f"{base}/pq/{info.name}", "rb") as handle:
                tables.append(pq.read_table(handle))
        check_parquet(tables, items)

        write_text(f"{base}/pq", "README.md", "# card\n")
        assert fs.cat(f"{base}/pq/README.md") == b"# card\n"

        writer = open_writer("parquet", f"{base}/aborted", 10)
        for sample in items[:15]:
            writer.write(sample)
        writer.abort()
        assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/aborted", detail=False)] == [
            "00000.parquet"
        ]
    finally:
        fs.rm(base, recursive=True)


def test_write_text_makes_a_local_folder(tmp_path: Path) -> None:
    write_text(str(tmp_path / "new"), "README.md", "héllo\n")
    assert (tmp_path / "new" / "README.md").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["README.md"]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto S3 server with the bucket made; s3fs reaches it through the environment
    (AWS_ENDPOINT_URL_S3, read by botocore when s3fs makes its client)."""
    import s3fs

    with moto_s3(tmp_path, (BUCKET,)) as settings:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()  # one made for another server's port
        try:
            yield settings
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


def test_s3_destination(s3: dict[str, str], tmp_path: Path) -> None:
    items = samples()
    infos = write_all("webdataset", f"s3://{BUCKET}/run-1/wds", items)
    check_infos(infos, "tar")
    write_all("parquet", f"s3://{BUCKET}/run-1/pq", items)
    write_text(f"s3://{BUCKET}/run-1/pq", "README.md", "# card\n")

    stored = objects(s3, BUCKET)
    assert sorted(stored) == [
        *(f"run-1/pq/0000{n}.parquet" for n in range(3)),
        "run-1/pq/README.md",
        *(f"run-1/wds/0000{n}.tar" for n in range(3)),
    ]
    assert [len(stored[f"run-1/wds/{i.name}"]) for i in infos] == [i.bytes for i in infos]
    local = []
    for info in infos:
        (tmp_path / info.name).write_bytes(stored[f"run-1/wds/{info.name}"])
        local.append(str(tmp_path / info.name))
    check_webdataset(local, items)
    tables = [pq.read_table(io.BytesIO(stored[f"run-1/pq/0000{n}.parquet"])) for n in range(3)]
    check_parquet(tables, items)
    assert stored["run-1/pq/README.md"] == b"# card\n"

    # Abort: the shard being written never appears, and no upload is left behind.
    writer = open_writer("parquet", f"s3://{BUCKET}/run-2", 10)
    for sample in items[:15]:
        writer.write(sample)
    writer.abort()
    assert sorted(k for k in objects(s3, BUCKET) if k.startswith("run-2/")) == [
        "run-2/00000.parquet"
    ]
    assert not client(s3).list_multipart_uploads(Bucket=BUCKET).get("Uploads")

    # A writer dropped without close or abort aborts too: s3fs's file, closed by its
    # own finalizer, would upload the partial shard.
    writer = open_writer("webdataset", f"s3://{BUCKET}/run-3", 10)
    for sample in items[:15]:
        writer.write(sample)
    del writer
    gc.collect()
    assert sorted(k for k in objects(s3, BUCKET) if k.startswith("run-3/")) == ["run-3/00000.tar"]

    with pytest.raises(ConfigError, match="already holds a dataset"):
        open_writer("webdataset", f"s3://{BUCKET}/run-1/wds")
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        open_writer("webdataset", "s3://no-such-bucket/x")
