"""The demo's check: a crawl's manifest and files against the site's ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from crawler.output.manifest import MANIFEST_NAME
from crawler.records import STORED


def compare_with_truth(truth: dict, site_url: str, out: Path) -> list[str]:
    """Problems found comparing a crawl's manifest and files with the ground truth."""
    base = site_url.rstrip("/")
    records = {}
    with (out / MANIFEST_NAME).open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            records[record["url"]] = record
    problems = []
    for image in truth["images"]:
        record = records.get(base + image["path"])
        if record is None or record["outcome"] != STORED:
            problems.append(f"not stored: {image['path']}")
            continue
        stored = out / record["path"]
        if (
            not stored.is_file()
            or hashlib.sha256(stored.read_bytes()).hexdigest() != image["sha256"]
        ):
            problems.append(f"wrong or missing file for {image['path']}: {stored}")
    for path in truth["broken_images"]:
        record = records.get(base + path)
        if record is None or record["status"] != 404:
            problems.append(f"broken image not reported as 404: {path}")
    return problems
