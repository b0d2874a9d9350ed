"""Our own faults never cost an image: ``crawler verify`` finds stored files that are
wrong or missing and puts them back in the queue, ``crawler harvest --retry-failed``
puts failed images back; the same ``crawler harvest`` command then fetches them again,
and the crawl ends with one manifest line per URL and every file true to the server's."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from crawler.demo.server import LocalHTTPServer
from crawler.output.manifest import read_manifest
from tests.e2e.cluster import Cluster, sha256_of
from tests.support.flaky_server import png_for


def harvest_round(cluster: Cluster, name: str, seed: str, out: Path, *extra: str) -> str:
    """``crawler harvest SEED --out OUT [extra]`` with one downloader, as a user runs
    them, until both end; returns what the harvester printed."""
    harvester = f"harvester-{name}"
    args = ["harvest", seed, "--listen", cluster.listen, "--out", str(out), "--allow-private"]
    cluster.crawler(harvester, [*args, *extra], cluster.env)
    cluster.downloader(f"node-{name}", out, concurrency=4)
    codes = cluster.wait_all([harvester, f"node-{name}"])
    assert codes == {harvester: 0, f"node-{name}": 0}, cluster.output(harvester)
    return (cluster.logs / f"{harvester}.out").read_text()


def crawler(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def manifest_by_url(out: Path) -> dict[str, dict]:
    records = read_manifest(out / "manifest.jsonl")
    by_url = {record["url"]: record for record in records}
    assert len(by_url) == len(records), "a URL appears twice in the manifest"
    return by_url


def test_verify_requeues_a_corrupt_file_and_the_same_harvest_fetches_it_again(
    cluster: Cluster, tmp_path: Path
):
    truth = cluster.serve_site(pages=4, images=24, seed=17)
    seed = cluster.site_url + "index.html"
    out = tmp_path / "downloads"
    harvest_round(cluster, "first", seed, out)
    expected = {cluster.site_url.rstrip("/") + image["path"]: image for image in truth["images"]}
    records = manifest_by_url(out)
    urls_of_path = collections.defaultdict(list)
    for url in expected:
        urls_of_path[records[url]["path"]].append(url)
    # The content two URLs share (one file for both), and a file of one URL only.
    shared = next(path for path, urls in urls_of_path.items() if len(urls) == 2)
    lone = next(path for path, urls in urls_of_path.items() if len(urls) == 1)
    with (out / shared).open("r+b") as handle:
        handle.truncate(handle.seek(0, 2) // 2)
    (out / lone).unlink()

    done = crawler(cluster, "verify", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"checked {len(expected)} stored images in {out}: {len(expected) - 3} ok, "
        "2 wrong content, 1 missing\n"
    ), done.stdout
    assert f"wrong content: {shared}" in done.stdout and f"missing: {lone}" in done.stdout
    assert "missing files were stored by node-first (1)" in done.stdout
    assert "run the same crawler harvest command to fetch 2 images again" in done.stdout
    assert not (out / shared).exists(), "a file with the wrong content is deleted"
    assert len(manifest_by_url(out)) == len(records) - 2

    printed = harvest_round(cluster, "second", seed, out)
    assert "crawl already finished" not in printed
    records = manifest_by_url(out)
    assert set(records) == set(expected) | {
        cluster.site_url + p[1:] for p in truth["broken_images"]
    }
    for url in urls_of_path[shared]:
        assert (records[url]["outcome"], records[url]["node"]) == ("stored", "node-second")
        assert records[url]["sha256"] == expected[url]["sha256"]
    assert sha256_of(out / shared) == expected[urls_of_path[shared][0]]["sha256"]
    assert not (out / lone).exists(), "a missing file is only reported"

    done = crawler(cluster, "verify", str(out), "--requeue-missing")
    assert done.returncode == 1 and ", 0 wrong content, 1 missing\n" in done.stdout, done.stdout
    harvest_round(cluster, "third", seed, out)
    assert sha256_of(out / lone) == expected[urls_of_path[lone][0]]["sha256"]

    done = crawler(cluster, "verify", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (
        f"checked {len(expected)} stored images in {out}: {len(expected)} ok, "
        "0 wrong content, 0 missing\n"
    )
    records = manifest_by_url(out)
    for url, image in expected.items():
        assert records[url]["outcome"] == "stored"
        assert sha256_of(out / records[url]["path"]) == image["sha256"], url


class GatedSite(LocalHTTPServer):
    """A page of four PNGs: ``/503.png`` answers 503 and ``/404.png`` 404 until
    ``open()``; every request is counted."""

    IMAGES = ("/a.png", "/b.png", "/503.png", "/404.png")

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gets: collections.Counter[str] = collections.Counter()
        super().__init__(("127.0.0.1", 0), _GatedHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _GatedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatedSite

    def do_GET(self) -> None:
        self.server.gets[self.path] += 1
        status, ctype, body = 404, "text/plain", b"not found\n"
        if self.path == "/":
            status, ctype = 200, "text/html"
            body = "".join(f'<img src="{p}">' for p in GatedSite.IMAGES).encode()
        elif self.path in GatedSite.IMAGES:
            closed = {"/503.png": 503, "/404.png": 404}.get(self.path)
            if closed and not self.server.gate.is_set():
                status, body = closed, b"not now\n"
            else:
                status, ctype, body = 200, "image/png", png_for(self.path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: ``gets`` counts the requests."""


def test_retry_failed_fetches_failed_images_again_by_reason(cluster: Cluster, tmp_path: Path):
    site = GatedSite()
    try:
        out = tmp_path / "downloads"
        config = tmp_path / "crawl.toml"
        config.write_text("[queue]\nmax_attempts = 2\n")  # a 503 fails after two tries
        urls = {path: site.url + path[1:] for path in GatedSite.IMAGES}
        harvest_round(cluster, "first", site.url, out, "--config", str(config))
        records = manifest_by_url(out)
        assert records[urls["/503.png"]]["error"] == "http_503"
        assert records[urls["/404.png"]]["error"] == "http_404"
        assert site.gets["/503.png"] == 2

        site.gate.set()  # the server is back; the page is not fetched again
        printed = harvest_round(
            cluster,
            "second",
            site.url,
            out,
            "--config",
            str(config),
            "--retry-failed",
            "--only",
            "http_503",
        )
        assert printed.startswith("retrying 1 failed image (http_503: 1)\n"), printed
        records = manifest_by_url(out)
        assert records[urls["/503.png"]]["outcome"] == "stored"
        assert records[urls["/503.png"]]["attempts"] == 1, "its tries begin again"
        assert records[urls["/404.png"]]["error"] == "http_404", "not named: left as it was"

        printed = harvest_round(cluster, "third", site.url, out, "--retry-failed")
        assert printed.startswith("retrying 1 failed image (http_404: 1)\n"), printed

        records = manifest_by_url(out)
        assert set(records) == set(urls.values())
        for path, url in urls.items():
            assert records[url]["outcome"] == "stored", records[url]
            stored = out / records[url]["path"]
            assert sha256_of(stored) == records[url]["sha256"]
            assert stored.read_bytes() == png_for(path)
        assert (site.gets["/a.png"], site.gets["/503.png"], site.gets["/404.png"]) == (1, 3, 2)
        assert site.gets["/"] == 1

        done = crawler(
            cluster,
            "harvest",
            site.url,
            "--out",
            str(out),
            "--listen",
            cluster.listen,
            "--allow-private",
            "--retry-failed",
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("no failed images to retry\ncrawl already finished")
    finally:
        site.close()
