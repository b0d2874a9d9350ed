"""Our own side's faults never cost an image: a node's full disk, an output it cannot
write, an address policy narrower than the crawl's. Real processes, real file systems
(a small tmpfs as a node's --out, grown later), bytes on disk checked by SHA-256."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from crawler.storage import TMP_DIR
from tests.e2e.cluster import Cluster, wait_for_text
from tests.e2e.conftest import needs_root

RUN_BOUND = 120.0


@pytest.fixture
def tmpfs(small_tmpfs) -> Path:  # type: ignore[no-untyped-def]
    """A 300 kB tmpfs: room for a few of the test site's 20-40 kB images only."""
    return small_tmpfs("300k")


def events_of(out: Path, name: str) -> list[dict[str, str]]:
    lines = (out / "progress.log").read_text().splitlines()
    return [event for event in map(parse_line, lines) if event.get("event") == name]


def assert_every_stored_file_is_true(folder: Path) -> int:
    """Every file under its final name holds the content its name says; returns how many."""
    files = [p for p in folder.rglob("*") if p.is_file() and TMP_DIR not in p.parts]
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem, path
    return len(files)


@needs_root
def test_a_node_whose_disk_fills_hands_back_and_resumes_when_space_returns(
    cluster: Cluster, tmp_path: Path, tmpfs: Path
):
    truth = cluster.serve_site(pages=4, images=30, image_bytes=(20_000, 40_000))
    out = tmp_path / "harvest"
    cluster.harvester(out)
    cluster.downloader("small", tmpfs, concurrency=4)
    wait_for_text(cluster.logs / "small.err", "cannot store images", timeout=60)
    wait_for_text(out / "progress.log", "event=node_failing", timeout=30)
    # Full for a while: nothing becomes a final failure meanwhile.
    assert all(r["outcome"] == "stored" for r in read_manifest(out / "manifest.jsonl"))

    subprocess.run(["mount", "-o", "remount,size=20m", str(tmpfs)], check=True)
    codes = cluster.wait_all(["harvester", "small"], timeout=RUN_BOUND)

    assert codes == {"harvester": 0, "small": 0}, cluster.output("small")
    records = cluster.check(truth, out, [tmpfs], nodes=1, max_gets=3)["records"]
    assert not [r for r in records if "store_error" in str(r["error"])]
    assert assert_every_stored_file_is_true(tmpfs) == len(truth["images"]) - 1
    node_err = (cluster.logs / "small.err").read_text()
    assert node_err.count("cannot store images") >= 1
    assert "can store images in" in node_err and "Traceback" not in node_err
    assert events_of(out, "node_failing")[0]["node"] == "small"
    assert events_of(out, "node_recovered")


def test_a_node_that_cannot_write_its_output_refuses_to_start(cluster: Cluster, tmp_path: Path):
    cluster.serve_site(pages=2, images=6)
    out = tmp_path / "harvest"
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cluster.harvester(out)
    cluster.downloader("broken", not_a_folder / "out")
    codes = cluster.wait_all(["broken"], timeout=30)
    assert codes == {"broken": 2}
    err = (cluster.logs / "broken.err").read_text()
    assert "cannot store images in the output folder" in err and "Traceback" not in err


@needs_root
def test_a_read_only_output_is_refused_at_start(cluster: Cluster, tmp_path: Path, tmpfs: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    cluster.serve_site(pages=2, images=6)
    cluster.harvester(tmp_path / "harvest")
    cluster.downloader("read-only", tmpfs)
    assert cluster.wait_all(["read-only"], timeout=30) == {"read-only": 2}
    err = (cluster.logs / "read-only.err").read_text()
    assert "Read-only file system" in err and "Traceback" not in err


def test_a_node_narrower_than_the_crawl_hands_its_images_to_another(
    cluster: Cluster, tmp_path: Path
):
    truth = cluster.serve_site(pages=3, images=20)
    out = tmp_path / "harvest"
    cluster.harvester(out)  # with --allow-private: the site is on 127.0.0.1
    # A node started without --allow-private: every image of this site is refused.
    cluster.crawler(
        "strict",
        ["download", "--connect", cluster.listen, "--out", str(out), "--processes", "1"],
        {**cluster.env, "CRAWLER_NODE_ID": "strict"},
    )
    wait_for_text(out / "progress.log", "event=node_failing node=strict", timeout=60)
    cluster.downloader("open", out)
    codes = cluster.wait_all(["harvester", "strict", "open"], timeout=RUN_BOUND)

    assert codes == {"harvester": 0, "strict": 0, "open": 0}, cluster.output("harvester")
    records = cluster.check(truth, out, nodes=None, max_gets=1)["records"]
    assert {r["node"] for r in records if r["outcome"] == "stored"} == {"open"}
    assert not [r for r in records if "blocked_address" in str(r["error"])]
    err = (cluster.logs / "strict.err").read_text()
    assert err.count("the crawl allows private addresses that this node refuses") == 1
    failing = events_of(out, "node_failing")[0]
    assert failing["node"] == "strict" and "--allow-private" in failing["error"]
