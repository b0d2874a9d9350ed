"""A site whose images refuse hotlinks (403 without the site's page as Referer), crawled
by real harvester and downloader processes."""

from __future__ import annotations

import collections

from crawler.output.manifest import MANIFEST_NAME, read_manifest


def test_images_that_refuse_hotlinks_are_stored_with_the_page_as_referer(cluster, tmp_path):
    truth = cluster.serve_site(pages=4, images=30, seed=11, hotlink_protect=True)
    out = tmp_path / "downloads"
    cluster.harvester(out)  # referer = "page", the default
    cluster.downloader("node-a", out)
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    cluster.check(truth, out, nodes=1)


def test_without_a_referer_they_fail_as_403_and_with_the_origin_they_pass(cluster, tmp_path):
    truth = cluster.serve_site(pages=2, images=8, seed=11, hotlink_protect=True)
    out = tmp_path / "none"
    cluster.harvester(out, env={**cluster.env, "CRAWLER_REFERER": "none"})
    cluster.downloader("node-a", out)
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    outcomes = collections.Counter(
        (r["outcome"], r["error"]) for r in read_manifest(out / MANIFEST_NAME)
    )
    assert outcomes == {
        ("failed", "http_403"): len(truth["images"]),
        ("failed", "http_404"): len(truth["broken_images"]),
    }

    # The origin alone is enough for a host that checks the Referer's site.
    out = tmp_path / "origin"
    cluster.harvester(out, env={**cluster.env, "CRAWLER_REFERER": "origin"})
    cluster.downloader("node-b", out)
    assert cluster.wait_all(["harvester", "node-b"]) == {"harvester": 0, "node-b": 0}
    records = read_manifest(out / MANIFEST_NAME)
    assert sum(r["outcome"] == "stored" for r in records) == len(truth["images"])
