"""Scope and limits on a real crawl: --exclude, --prefix and --max-images."""

from __future__ import annotations

import json
import re

from crawler.output.progress import parse_line


def events(log_text: str, name: str) -> list[dict[str, str]]:
    return [r for r in map(parse_line, log_text.splitlines()) if r.get("event") == name]


def requested_paths(access_log_text: str) -> list[str]:
    return [line.split()[1] for line in access_log_text.splitlines() if line.startswith("GET ")]


def test_excluded_and_out_of_prefix_pages_are_never_fetched(cluster, tmp_path):
    truth = cluster.serve_site(pages=12, images=60, seed=5)
    out = tmp_path / "downloads"
    # The site's pages are /index.html and /pages/p001.html .. p011.html.
    prefix = cluster.site_url + "pages/p00"  # leaves out p010 and p011
    cluster.harvester(out, "--prefix", prefix, "--exclude", r"/p00[23]\.html$")
    cluster.downloader("node-a", out)
    codes = cluster.wait_all(["harvester", "node-a"])
    assert codes == {"harvester": 0, "node-a": 0}, cluster.output("harvester")

    excluded = {"/pages/p002.html", "/pages/p003.html", "/pages/p010.html", "/pages/p011.html"}
    fetched = {
        event["url"].removeprefix(cluster.site_url.rstrip("/"))
        for event in events((out / "progress.log").read_text(), "page_fetched")
    }
    expected = {"/index.html"} | (set(truth["pages"]) - excluded)  # the seed always
    assert fetched == expected
    requested = set(requested_paths(cluster.access_log.read_text()))
    assert not requested & excluded, "an excluded page was requested"

    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    pages_of_images = {
        record["page"].removeprefix(cluster.site_url.rstrip("/")) for record in manifest
    }
    assert pages_of_images and not pages_of_images & excluded
    assert all(record["outcome"] in ("stored", "failed") for record in manifest)


def test_max_images_stops_queueing_and_says_how_many_were_left_out(cluster, tmp_path):
    truth = cluster.serve_site(pages=10, images=80, seed=6)
    out = tmp_path / "downloads"
    cluster.harvester(out, "--max-images", "25")
    cluster.downloader("node-a", out)
    codes = cluster.wait_all(["harvester", "node-a"])
    assert codes == {"harvester": 0, "node-a": 0}, cluster.output("harvester")

    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 25
    log = (out / "progress.log").read_text()
    assert len(events(log, "image_limit_reached")) == 1
    left_out = sum(int(e["count"]) for e in events(log, "images_left_out"))
    assert left_out > 0
    summary = (cluster.logs / "harvester.out").read_text()
    assert re.search(rf"25 images found, .* {left_out} more image URLs left out", summary)
    # No page is started once the budget is full, so most of the site is never fetched.
    pages_fetched = len(events(log, "page_fetched"))
    assert pages_fetched < len(truth["pages"])
