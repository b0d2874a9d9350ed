"""From crawl to dataset, measured on the dataset site (``crawler.demo.dataset_site``):
a real harvester ``--for-dataset --variants largest`` and downloader node crawl it,
then ``crawler export`` writes WebDataset and Parquet shards. Prints:

* near-duplicate precision and recall: pairs of exported images the export put in
  one group (``near_duplicate_of``) against pairs that show the same picture (each
  picture's largest variant and its resized, cropped, re-encoded copy);
* export throughput (samples/s and MB/s) for each format, hashing included;
* the page parse cost of a dataset crawl: ``extract_page`` with and without
  ``describe`` on the site's gallery pages.

Not a test (timings vary by machine). Run from the repository:
    .venv/bin/python scripts/dataset_bench.py [--galleries 20] [--per-gallery 10]
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.demo.dataset_site import build_dataset_site
from crawler.web.extract import extract_page
from tests.e2e.cluster import Cluster


def crawl(site, scratch: Path, nodes: int) -> Path:
    cluster = Cluster(scratch)
    out = scratch / "out"
    try:
        with site.serve() as url:
            cluster.site_url = url
            cluster.harvester(out, "--for-dataset", "--variants", "largest", "--max-depth", "3")
            names = [f"node-{n}" for n in range(nodes)]
            for name in names:
                cluster.downloader(name, out, concurrency=16)
            codes = cluster.wait_all(["harvester", *names], timeout=900)
            if any(codes.values()):
                raise SystemExit(f"a process failed: {codes}\n{cluster.output('harvester')}")
    finally:
        cluster.stop_all()
    return out


def export(out: Path, fmt: str, dest: Path):
    """``crawler export`` in this process (its start-up left out): the export's record."""
    from crawler.dataset.export import export_dataset

    return export_dataset(out, fmt, str(dest), 10_000)


def near_duplicate_figures(site, dest: Path) -> dict:
    """Precision and recall of the groups, over pairs of exported images."""
    import pyarrow.parquet as pq

    rows = pq.read_table(str(dest / "00000.parquet")).to_pylist()
    group = {row["url"]: row["near_duplicate_of"] or row["sha256"] for row in rows}
    picture = {url: site.truth["/" + url.split("/", 3)[3]]["picture"] for url in group}
    found = same = both = 0
    for a, b in itertools.combinations(sorted(group), 2):
        in_group = group[a] == group[b]
        true_pair = picture[a] == picture[b]
        found += in_group
        same += true_pair
        both += in_group and true_pair
    return {
        "images": len(group),
        "true_pairs": same,
        "found_pairs": found,
        "precision": round(both / found, 4) if found else 1.0,
        "recall": round(both / same, 4) if same else 1.0,
    }


def parse_cost(site, rounds: int) -> dict:
    pages = [r.body for p, r in site.files.items() if p.startswith("/gallery")]
    figures = {}
    for describe in (False, True):
        started = time.perf_counter()
        for _ in range(rounds):
            for body in pages:
                extract_page(body, "http://127.0.0.1/gallery.html", "text/html", describe)
        figures[describe] = (time.perf_counter() - started) / (rounds * len(pages))
    return {
        "ms_per_page_plain": round(figures[False] * 1000, 3),
        "ms_per_page_dataset": round(figures[True] * 1000, 3),
        "ratio": round(figures[True] / figures[False], 2),
    }


def bulk(count: int) -> None:
    """Export throughput on ``count`` stored 800 px JPEGs (40 pictures, each file's
    bytes distinct), hashing in 1 process and in one per core."""
    import hashlib

    from crawler.dataset.export import export_dataset
    from crawler.demo.dataset_site import encoded, picture

    with tempfile.TemporaryDirectory(prefix="dataset-bulk-") as scratch:
        out, records = Path(scratch) / "out", []
        bases = [encoded(picture(n, 800)) for n in range(40)]
        for n in range(count):
            data = bases[n % 40] + n.to_bytes(4, "big")  # after the JPEG's end: still it
            sha = hashlib.sha256(data).hexdigest()
            path = f"h/{sha[:2]}/{sha}.jpg"
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(data)
            records.append(
                {"url": f"http://h/{n}.jpg", "page": "http://h/", "kind": "img_src"}
                | {"outcome": "stored", "path": path, "sha256": sha, "bytes": len(data)}
                | {"width": 800, "height": 600}
            )
        (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        size = sum(r["bytes"] for r in records) / 1e6
        print(f"bulk: {count} images, {size:.0f} MB")
        print("| format | hashing processes | seconds (hashing) | samples/s | MB/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for processes in (1, 0):
            for fmt in ("webdataset", "parquet"):
                dest = Path(scratch) / f"{fmt}-{processes}"
                done = export_dataset(out, fmt, str(dest), 10_000, processes=processes)
                print(
                    f"| {fmt} | {processes or 'one per core'} | {done.seconds:.1f} "
                    f"({done.hashing_seconds:.1f}) | {done.figures.samples / done.seconds:,.0f} "
                    f"| {size / done.seconds:.1f} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--galleries", type=int, default=20)
    parser.add_argument("--per-gallery", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--bulk", type=int, default=4000, help="images of the bulk export")
    args = parser.parse_args()
    started = time.monotonic()
    site = build_dataset_site(args.galleries, args.per_gallery)
    print(f"site: {len(site.files)} files, built in {time.monotonic() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="dataset-bench-") as scratch:
        started = time.monotonic()
        out = crawl(site, Path(scratch), args.nodes)
        print(f"crawl: {time.monotonic() - started:.1f} s")
        records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        stored = [r for r in records if r["outcome"] == "stored"]
        size = sum(r["bytes"] for r in stored)
        print(f"stored: {len(stored)} images, {size / 1e6:.1f} MB")
        print("| format | samples | seconds (hashing) | samples/s | MB/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for fmt in ("webdataset", "parquet"):
            done = export(out, fmt, Path(scratch) / fmt)
            samples, seconds = done.figures.samples, done.seconds
            print(
                f"| {fmt} | {samples} | {seconds:.2f} ({done.hashing_seconds:.2f}) | "
                f"{samples / seconds:,.0f} | {size / 1e6 / seconds:.1f} |"
            )
        figures = near_duplicate_figures(site, Path(scratch) / "parquet")
        print("near-duplicates:", json.dumps(figures))
    print("page parse:", json.dumps(parse_cost(site, 20)))
    if args.bulk:
        bulk(args.bulk)


if __name__ == "__main__":
    main()
