"""robots.txt in a real crawl: disallowed pages and images are not fetched, but reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROBOTS = "User-agent: *\nDisallow: /pages/p002.html\nDisallow: /img/png/\n"


@pytest.mark.parametrize("ignore", [False, True], ids=["obeyed", "ignored"])
def test_robots_txt_is_honoured_for_pages_and_images(cluster, tmp_path: Path, ignore: bool):
    truth = cluster.serve_site(pages=6, images=40, seed=51)
    (tmp_path / "site" / "robots.txt").write_text(ROBOTS)
    out = tmp_path / "downloads"
    cluster.harvester(out, *(["--ignore-robots"] if ignore else []))
    cluster.downloader("node", out)
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")

    gets = [line.split()[1] for line in cluster.access_log.read_text().splitlines()]
    records = {
        json.loads(line)["url"]: json.loads(line)
        for line in (out / "manifest.jsonl").read_text().splitlines()
    }
    base = cluster.site_url.rstrip("/")
    png = [image["path"] for image in truth["images"] if image["path"].startswith("/img/png/")]
    assert png, "the site should have PNG images"
    log = (out / "progress.log").read_text()
    if ignore:
        assert "robots=ignored" in log
        assert "/pages/p002.html" in gets
        assert all(records[base + path]["outcome"] == "stored" for path in png)
        return
    assert "robots=obeyed" in log and gets.count("/robots.txt") == 1
    assert "/pages/p002.html" not in gets
    assert "event=page_skipped url=" + base + "/pages/p002.html reason=robots.txt" in log
    assert not [path for path in gets if path.startswith("/img/png/")]
    assert any(base + path in records for path in png), "refused images are in the manifest"
    for path in png:
        if base + path in records:  # found on a page the crawl was allowed to read
            record = records[base + path]
            assert (record["outcome"], record["error"]) == ("failed", "robots_disallowed")
    others = [image["path"] for image in truth["images"] if image["path"] not in png]
    stored = [p for p in others if records.get(base + p, {}).get("outcome") == "stored"]
    assert stored, "images robots.txt allows are still downloaded"
