"""From crawl to dataset with real processes: a harvester ``--for-dataset --variants
largest`` and a downloader node crawl the dataset site (``demo.dataset_site``, on
127.0.0.1), then ``crawler export`` writes WebDataset and Parquet shards (to a folder
and to a local S3 server), read back with the ``webdataset`` library, ``tarfile`` and
pyarrow."""

from __future__ import annotations

import collections
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from crawler.demo.dataset_site import BIG_OPT_OUT_BYTES, build_dataset_site
from crawler.output.manifest import MANIFEST_NAME, read_manifest
from crawler.output.references import REFERENCES_NAME
from tests.support.s3 import moto_s3


@pytest.fixture(scope="module")
def site():
    return build_dataset_site()


def crawl(cluster, site, out: Path, *flags: str) -> dict[str, dict]:
    with site.serve() as url:
        cluster.site_url = url
        cluster.harvester(out, "--max-depth", "3", *flags)
        cluster.downloader("node-a", out, concurrency=4)
        assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    return {
        record["url"].removeprefix(url.rstrip("/")): record
        for record in read_manifest(out / MANIFEST_NAME)
    }


def export(out: Path, fmt: str, output: str, *flags: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "crawler",
            "export",
            str(out),
            "--format",
            fmt,
            "--output",
            output,
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_a_dataset_crawl_fetches_the_largest_variants_and_honours_every_opt_out(
    cluster, tmp_path, site
):
    out = tmp_path / "downloads"
    site.requests.clear()
    records = crawl(cluster, site, out, "--for-dataset", "--variants", "largest")
    truth = site.truth

    # Variants: of each picture only its largest candidate was requested.
    largest = {path for path, t in truth.items() if t["largest"] == path and not t["opt_out"]}
    fetched = {path for path, _ in site.requests if path.startswith("/img/")}
    assert {path for path in fetched if not truth[path]["opt_out"]} == largest
    assert all(site.requested(path) == 1 for path in largest)
    for path in largest:
        assert records[path]["outcome"] == "stored", records[path]

    # Opt-outs: each is recorded with its signal; none is stored.
    opted = {path: records[path] for path, t in truth.items() if t["opt_out"]}
    assert len(opted) == 6
    for record in opted.values():
        assert record["outcome"] == "failed" and record["error"].startswith("opt_out: "), record
        assert record["opt_out"], record
    signals = {path: record["opt_out"] for path, record in opted.items()}
    assert signals["/img/noimageai.jpg"] == "x-robots-tag: noimageai"
    assert signals["/img/tdm-header.jpg"] == "tdm-reservation: 1"
    assert signals["/img/meta-noai.jpg"] == "meta robots: noai"
    assert "x-robots-tag" in signals["/img/header-page.jpg"]
    assert signals["/img/tdm-meta.jpg"] == "meta tdm-reservation: 1"
    assert signals["/img/tdmrep.jpg"] == "tdmrep.json: reserved"
    # The images of opted-out pages were never requested; an image's own header was
    # read before its body, which was not downloaded (its server could not send it all).
    for path in (
        "/img/meta-noai.jpg",
        "/img/header-page.jpg",
        "/img/tdm-meta.jpg",
        "/img/tdmrep.jpg",
    ):
        assert site.requested(path) == 0, path
    sent = [size for path, size in site.requests if path == "/img/noimageai.jpg"]
    assert sent and max(sent) < BIG_OPT_OUT_BYTES
    assert site.requested("/.well-known/tdmrep.json") == 1

    # References: the page's text for each image, the variants left out among them.
    rows = [json.loads(line) for line in (out / REFERENCES_NAME).read_text().splitlines()]
    by_url = collections.defaultdict(list)
    for row in rows:
        by_url[row["url"].split("/", 3)[3]].append(row)
    first = by_url["img/p1-480.jpg"][0]
    assert first["alt"] == truth["/img/p1-480.jpg"]["alt"]
    assert first["caption"] == truth["/img/p1-480.jpg"]["caption"]
    assert first["page_title"] == "Gallery 0" and first["lang"] == "en"
    assert "Notes on picture 1" in first["context"]
    variant = by_url["img/p1-160.jpg"][0]
    assert variant["kind"] == "variant" and variant["variant_of"].endswith("/img/p1-480.jpg")
    assert by_url["img/copy1.jpg"][0]["lang"] == "fr"

    # WebDataset shards, read back with webdataset and with tarfile.
    shards = tmp_path / "shards"
    done = export(out, "webdataset", str(shards), "--shard-size", "5")
    assert done.returncode == 0, done.stderr
    stored = [r for r in records.values() if r["outcome"] == "stored"]
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert len(names) == -(-len(stored) // 5)
    samples = list(wds.WebDataset([str(shards / n) for n in names], shardshuffle=False))
    assert len(samples) == len(stored)
    by_sha = {r["sha256"]: r for r in stored}
    pictures = {}
    for sample in samples:
        meta = json.loads(sample["json"])
        image = next(sample[key] for key in ("jpg", "png", "gif", "webp") if key in sample)
        record = by_sha[meta["sha256"]]
        assert (out / record["path"]).read_bytes() == image
        assert Image.open(io.BytesIO(image)).size == (meta["width"], meta["height"])
        path = meta["url"].split("/", 3)[3]
        pictures[meta["sha256"]] = (truth["/" + path], meta)
        assert meta["opt_out"] is None
        if not truth["/" + path]["copy"]:
            assert meta["alt"] == truth["/" + path]["alt"]
            assert meta["caption"] == truth["/" + path]["caption"]
    with tarfile.open(shards / names[0]) as tar:
        members = tar.getnames()
    assert members[0].endswith((".jpg", ".json")) and len(members) == 10

    # Near-duplicates: each copy and its original share the original as representative.
    for t, meta in pictures.values():
        same_picture = [s for s, (other, _) in pictures.items() if other["picture"] == t["picture"]]
        assert len(same_picture) == 2  # the largest variant and its copy
        representative = next(s for s in same_picture if not pictures[s][0]["copy"])
        assert meta["near_duplicate_of"] == representative, (t, meta)

    card = (shards / "README.md").read_text()
    assert f"{len(stored)}" in card and "opt" in card.lower()

    # Parquet straight to S3 (moto's server), read back with pyarrow.
    with moto_s3(tmp_path, ("datasets",)) as settings:
        env = {**cluster.env, **settings}
        done = export(out, "parquet", "s3://datasets/crawl", "--shard-size", "100", env=env)
        assert done.returncode == 0, done.stderr
        import s3fs

        fs = s3fs.S3FileSystem(
            key=settings["AWS_ACCESS_KEY_ID"],
            secret=settings["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=settings["AWS_ENDPOINT_URL_S3"],
        )
        table = pq.read_table("datasets/crawl/00000.parquet", filesystem=fs)
        assert table.num_rows == len(stored)
        rows = table.to_pylist()
        assert {row["sha256"] for row in rows} == set(by_sha)
        for row in rows:
            assert (out / by_sha[row["sha256"]]["path"]).read_bytes() == row["image"]
        assert fs.exists("datasets/crawl/README.md")


def test_a_plain_crawl_records_opt_outs_and_the_export_leaves_them_out(cluster, tmp_path, site):
    out = tmp_path / "downloads"
    records = crawl(cluster, site, out)
    own = records["/img/noimageai.jpg"]
    assert own["outcome"] == "stored" and own["opt_out"] == "x-robots-tag: noimageai"
    page_opted = records["/img/meta-noai.jpg"]
    assert page_opted["outcome"] == "stored" and page_opted.get("opt_out") is None
    rows = [json.loads(line) for line in (out / REFERENCES_NAME).read_text().splitlines()]
    assert {row["url"].split("/", 3)[3] for row in rows} == {
        "img/meta-noai.jpg",
        "img/header-page.jpg",
        "img/tdm-meta.jpg",
    }  # only the references of opted-out pages (TDMRep files are read for datasets)

    kept = tmp_path / "kept"
    left = tmp_path / "left"
    assert export(out, "webdataset", str(left)).returncode == 0
    done = export(out, "webdataset", str(kept), "--ignore-opt-out")
    assert done.returncode == 0 and "--ignore-opt-out" in done.stderr
    urls = {}
    for folder in (left, kept):
        urls[folder] = {
            json.loads(s["json"])["url"].split("/", 3)[3]
            for s in wds.WebDataset(sorted(map(str, folder.glob("*.tar"))), shardshuffle=False)
        }
    opted = {
        f"img/{name}.jpg"
        for name in ("noimageai", "tdm-header", "meta-noai", "header-page", "tdm-meta")
    }
    assert urls[kept] - urls[left] == opted
    assert "left out" in (left / "README.md").read_text().lower()


def test_export_refuses_what_it_cannot_do(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MANIFEST_NAME).write_text("")
    done = export(tmp_path / "out", "webdataset", str(tmp_path / "out"))  # not empty
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "export", str(tmp_path / "out"), "--format", "parquet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--output" in done.stderr
