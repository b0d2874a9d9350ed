"""The dataset export on a crawl's OUT made by hand: samples, opt-outs left out or
kept, near-duplicates (hashed here or in worker processes, the same), what is skipped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crawler.dataset import export as dataset_export
from crawler.dataset.export import export_dataset
from crawler.demo.dataset_site import encoded, picture
from crawler.errors import ConfigError
from crawler.output.manifest import MANIFEST_NAME
from crawler.output.references import REFERENCES_NAME

SITE = "http://site.test"


def crawl_out(tmp_path: Path) -> Path:
    """An OUT with 6 stored images (pictures 1-3, each with a smaller copy), one opted
    out by its own header, one by a page, one missing file, one icon, one failure."""
    out = tmp_path / "out"
    records, references = [], []

    def store(name: str, data: bytes, ext: str = "jpg", **fields) -> None:
        sha = hashlib.sha256(data).hexdigest()
        path = f"site.test/{sha[:2]}/{sha}.{ext}"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
        records.append(
            {
                "url": f"{SITE}/{name}",
                "page": f"{SITE}/p.html",
                "kind": "img_src",
                "outcome": "stored",
                "path": path,
                "sha256": sha,
                "bytes": len(data),
                "width": 1,
                "height": 1,
                **fields,
            }
        )

    for number in (1, 2, 3):
        big = picture(number, 400)
        store(f"p{number}.jpg", encoded(big), width=400, height=300)
        store(f"c{number}.jpg", encoded(big.resize((200, 150)), quality=60), width=200, height=150)
        references.append(
            {
                "url": f"{SITE}/p{number}.jpg",
                "page": f"{SITE}/p.html",
                "kind": "img_src",
                "alt": f"picture {number}",
            }
        )
    store("own.jpg", encoded(picture(40, 100)), opt_out="x-robots-tag: noai")
    store("paged.jpg", encoded(picture(41, 100)))
    references.append(
        {
            "url": f"{SITE}/paged.jpg",
            "page": f"{SITE}/other.html",
            "kind": "img_src",
            "opt_out": "meta robots: noai",
        }
    )
    store("icon.ico", b"\x00\x00\x01\x00" + b"\x01" * 40, ext="ico")
    records.append(
        {
            "url": f"{SITE}/gone.jpg",
            "page": f"{SITE}/p.html",
            "kind": "img_src",
            "outcome": "stored",
            "path": "site.test/00/missing.jpg",
            "sha256": "0" * 64,
        }
    )
    records.append(
        {
            "url": f"{SITE}/bad.jpg",
            "page": f"{SITE}/p.html",
            "kind": "img_src",
            "outcome": "failed",
            "error": "http_404",
        }
    )
    (out / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / REFERENCES_NAME).write_text("".join(json.dumps(r) + "\n" for r in references))
    return out


def rows(dest: Path) -> dict[str, dict]:
    table = pq.read_table(str(dest / "00000.parquet"))
    return {row["url"].rsplit("/", 1)[1]: row for row in table.to_pylist()}


def test_samples_opt_outs_and_near_duplicates(tmp_path):
    out = crawl_out(tmp_path)
    done = export_dataset(out, "parquet", str(tmp_path / "set"), 100)
    found = rows(tmp_path / "set")
    assert set(found) == {"p1.jpg", "c1.jpg", "p2.jpg", "c2.jpg", "p3.jpg", "c3.jpg"}
    for number in (1, 2, 3):
        original, copy = found[f"p{number}.jpg"], found[f"c{number}.jpg"]
        assert original["near_duplicate_of"] == copy["near_duplicate_of"] == original["sha256"]
        assert original["alt"] == f"picture {number}" and original["references"] == 1
    figures = done.figures
    assert figures.samples == 6 and figures.opted_out_left_out == 2
    assert figures.opt_out_signals == {"x-robots-tag: noai": 1, "meta robots: noai": 1}
    assert figures.near_duplicate_groups == 3 and figures.near_duplicate_images == 6
    assert figures.skipped == {"file missing": 1, ".ico (not a dataset image type)": 1}
    assert figures.failed == {"http_404": 1}
    card = (tmp_path / "set" / "README.md").read_text()
    assert "x-robots-tag: noai" in card and "left out" in card


def test_ignore_opt_out_keeps_them_marked(tmp_path):
    out = crawl_out(tmp_path)
    export_dataset(out, "parquet", str(tmp_path / "set"), 100, ignore_opt_out=True)
    found = rows(tmp_path / "set")
    assert found["own.jpg"]["opt_out"] == "x-robots-tag: noai"
    assert found["paged.jpg"]["opt_out"] == "meta robots: noai"


def test_worker_processes_hash_the_same(tmp_path, monkeypatch):
    out = crawl_out(tmp_path)
    export_dataset(out, "parquet", str(tmp_path / "here"), 100, processes=1)
    monkeypatch.setattr(dataset_export, "POOL_FROM", 1)
    export_dataset(out, "parquet", str(tmp_path / "pool"), 100, processes=2)
    here, pool = rows(tmp_path / "here"), rows(tmp_path / "pool")
    assert {k: v["near_duplicate_of"] for k, v in here.items()} == {
        k: v["near_duplicate_of"] for k, v in pool.items()
    }


def test_refusals(tmp_path):
    out = crawl_out(tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset format"):
        export_dataset(out, "tfrecord", str(tmp_path / "x"), 10)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "00000.tar").write_bytes(b"")
    with pytest.raises(ConfigError):
        export_dataset(out, "webdataset", str(tmp_path / "full"), 10)
