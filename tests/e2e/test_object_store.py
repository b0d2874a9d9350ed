"""Images in one place: downloader nodes with ``--out s3://BUCKET/PREFIX`` fill one store
(a local S3-compatible server, moto's server mode, on 127.0.0.1), and ``crawler report``
and ``crawler export`` read the images from it with ``--images``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.support.s3 import AWS, moto_s3
from tests.support.s3 import objects as store_objects

BUCKET, PREFIX = "crawl-images", "run-1"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with the bucket made; the AWS settings that reach it."""
    with moto_s3(tmp_path, (BUCKET,)) as settings:
        yield settings


def objects(settings: dict[str, str]) -> dict[str, bytes]:
    return store_objects(settings, BUCKET)


def test_two_nodes_fill_one_store_and_report_and_export_read_it(
    cluster: Cluster, tmp_path: Path, s3: dict[str, str]
) -> None:
    cluster.env.update(s3)
    store = f"s3://{BUCKET}/{PREFIX}"
    truth = cluster.serve_site(pages=6, images=50, seed=5, image_delay=0.05)
    out = tmp_path / "harvester"
    cluster.harvester(out)
    for name in ("node-a", "node-b"):
        cluster.downloader(name, store, "--concurrency", "4")  # type: ignore[arg-type]
    codes = cluster.wait_all(["harvester", "node-a", "node-b"])
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0}, {
        name: cluster.output(name) for name in codes
    }

    # Every object is under the prefix and its content-addressed name; the crawl's
    # checks then run on a copy of the store: every image once, with the right bytes.
    stored = objects(s3)
    assert stored and all(key.startswith(f"{PREFIX}/") for key in stored)
    copy = tmp_path / "from-store"
    for key, data in stored.items():
        path = copy / key[len(PREFIX) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    cluster.check(truth, out, [copy], nodes=2)

    exported = tmp_path / "export.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "export", str(out), "--format", "jsonl",
         "--output", str(exported), "--images", store],
        env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    stored_rows = [row for row in rows if row["outcome"] == "stored"]
    assert len(stored_rows) == len(truth["images"])
    assert all(row["file"] == f"{store}/{row['path']}" for row in stored_rows)

    report = subprocess.run(
        [sys.executable, "-m", "crawler", "report", str(out), "--images", store],
        env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    distinct = truth["distinct_contents"]
    assert f"{distinct} thumbnails" in report.stdout, report.stdout
    assert "not in OUT" not in report.stdout and "on node" not in report.stdout
    # Nothing was written into the harvester's folder but its own files.
    assert not [p for p in out.rglob("*.png")]


def test_a_harvester_refuses_a_store_as_its_out(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "harvest", "http://127.0.0.1:9/", "--out",
         f"s3://{BUCKET}/x"],
        env={**AWS, "PATH": "/usr/bin:/bin", "CRAWLER_AUTHKEY": "k" * 24},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "the harvester's --out is a local folder" in done.stderr
    assert not list(tmp_path.iterdir())
