"""``crawler harvest --render auto`` and ``always`` as a user runs them: real harvester
and downloader processes, Debian's Chromium, a site whose images and menu are made by
scripts, served on 127.0.0.1."""

from __future__ import annotations

import collections
import hashlib

from crawler.output.manifest import MANIFEST_NAME, read_manifest
from tests.e2e.cluster import sha256_of
from tests.support.script_site import RENDERED_IMAGES, write_script_site


def _crawl(cluster, tmp_path, mode: str):
    images = write_script_site(tmp_path / "site")
    cluster.serve_folder(tmp_path / "site")
    out = tmp_path / "downloads"
    cluster.harvester(out, "--render", mode, "--no-sitemaps")
    cluster.downloader("node-a", out)
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    return images, out


def test_render_auto_stores_every_script_made_image_once_with_its_bytes(
    cluster, tmp_path, chromium
) -> None:
    images, out = _crawl(cluster, tmp_path, "auto")

    records = read_manifest(out / MANIFEST_NAME)
    site = cluster.site_url.rstrip("/")
    assert sorted(r["url"] for r in records) == sorted(site + path for path in images)
    for record in records:
        assert record["outcome"] == "stored", record
        path = record["url"].removeprefix(site)
        assert record["sha256"] == hashlib.sha256(images[path]).hexdigest()
        assert sha256_of(out / record["path"]) == record["sha256"]
    # Every page was asked for once (the browser is handed the body), the pages only
    # the script-made menu links to included; every image once, by the downloader.
    gets = collections.Counter(
        line.split()[1]
        for line in cluster.access_log.read_text().splitlines()
        if line.startswith("GET ")
    )
    for page in ("/index.html", *RENDERED_IMAGES):
        assert gets[page] == 1, (page, gets)
    assert all(gets[path] == 1 for path in images), gets
    summary = cluster.output("harvester")
    assert "5 pages rendered (" in summary, summary
