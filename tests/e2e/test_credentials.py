"""A site behind a consent cookie and an API header, crawled by real harvester and
downloader processes given a browser's cookies.txt and a header rule."""

from __future__ import annotations

import collections

from crawler.output.manifest import MANIFEST_NAME, read_manifest

COOKIES = "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tconsent\tyes-S3CRET\n"


def test_a_gated_site_is_crawled_whole_with_the_cookies_and_the_header(cluster, tmp_path):
    truth = cluster.serve_site(
        pages=4,
        images=30,
        seed=13,
        require=("--require-cookie", "consent=yes-S3CRET", "--require-header", "X-Key: K3Y-S3CRET"),
    )
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(COOKIES)
    config = tmp_path / "crawler.toml"
    config.write_text('[crawl]\nheaders = ["127.0.0.1 X-Key: K3Y-S3CRET"]\n')
    out = tmp_path / "downloads"
    given = ("--cookies", str(cookies), "--config", str(config))
    cluster.harvester(out, *given)
    cluster.downloader("node-a", out, *given)
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    cluster.check(truth, out, nodes=1)
    # No value of the cookie or the header is anywhere the crawl wrote or printed.
    written = [out / "progress.log", out / MANIFEST_NAME, *cluster.logs.iterdir()]
    assert not [path for path in written if "S3CRET" in path.read_text(errors="replace")]


def test_without_them_every_page_is_refused(cluster, tmp_path):
    cluster.serve_site(pages=2, images=4, seed=13, require=("--require-cookie", "consent=yes"))
    out = tmp_path / "downloads"
    harvester = cluster.harvester(out)
    assert harvester.wait(timeout=60) == 3  # the seed failed: nothing fetched
    errors = collections.Counter(
        line.split("error=")[1]
        for line in (out / "progress.log").read_text().splitlines()
        if "event=page_failed" in line
    )
    assert errors == {"http_403": 1}
    assert read_manifest(out / MANIFEST_NAME) == []
