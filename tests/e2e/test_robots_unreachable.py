"""A robots.txt that cannot be read holds its host's pages and images; it is never a disallow.

Real processes, as a user starts them: a site that is down when the crawl starts is
crawled once it is up; images on a CDN whose robots.txt cannot be read wait for it,
and fail as ``robots_unreachable`` (each with its manifest line) only when its tries
run out; a certificate the crawler cannot trust is a final ``tls_error`` at once.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import generate_site
from crawler.harvest.harvester import EXIT_NOTHING_FETCHED
from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from tests.e2e.cluster import Cluster, free_port, wait_for_file
from tests.web.test_failures import self_signed

__all__ = ["self_signed"]  # the fixture, shared with test_failures

QUICK_GIVE_UP = {"CRAWLER_HOST_DOWN_TIMEOUT": "0", "CRAWLER_MAX_ATTEMPTS": "3"}  # 3 tries


def start_server(cluster: Cluster, name: str, folder: Path, port: int) -> Path:
    """Serve ``folder`` on 127.0.0.1:``port`` as ``crawler.demo.site serve`` does for a
    user; returns its access log."""
    access_log = cluster.tmp / f"{name}-access.log"
    port_file = cluster.tmp / f"{name}.port"
    cluster.start(
        name,
        [
            *(sys.executable, "-m", "crawler.demo.site", "serve", str(folder)),
            *("--host", "127.0.0.1", "--port", str(port), "--port-file", str(port_file)),
            *("--access-log", str(access_log)),
        ],
        cluster.env,
    )
    wait_for_file(port_file)
    return access_log


def events(out: Path, name: str) -> list[dict]:
    lines = (out / "progress.log").read_text().splitlines()
    return [event for event in map(parse_line, lines) if event.get("event") == name]


def wait_for_events(out: Path, name: str, count: int, timeout: float = 30.0) -> None:
    wait_for_file(out / "progress.log", timeout)
    deadline = time.monotonic() + timeout
    while len(events(out, name)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {name} events in {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("robots", ["obeyed", "ignored"])
def test_a_site_that_is_down_when_the_crawl_starts_is_crawled_once_it_is_up(
    cluster: Cluster, tmp_path: Path, robots: str
):
    truth = generate_site(tmp_path / "site", pages=4, images=20, seed=61)
    port = free_port()
    cluster.site_url = f"http://127.0.0.1:{port}/"
    out = tmp_path / "downloads"
    cluster.harvester(out, *(["--ignore-robots"] if robots == "ignored" else []))
    cluster.downloader("node", out)
    wait_for_events(out, "page_retry", 2)  # tried again after a pause, still down
    cluster.access_log = start_server(cluster, "site", tmp_path / "site", port)
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")

    cluster.check(truth, out, nodes=1)
    retries = events(out, "page_retry")
    expected = "robots_unreachable: " if robots == "obeyed" else ""
    assert retries and all(
        event["url"] == cluster.site_url + "index.html"
        and event["error"] == expected + "connection_error: connection refused"
        for event in retries
    ), retries
    assert len(retries) >= 2, "tried again with a pause, not given up"
    assert not [e for e in events(out, "page_skipped") if e["reason"] == "robots.txt"]
    seed = cluster.site_url + "index.html"
    assert not [e for e in events(out, "page_failed") if e["url"] == seed]
    assert "trying it again" in (tmp_path / "logs" / "harvester.err").read_text()
    assert "disallowed" not in (tmp_path / "logs" / "harvester.err").read_text()


def cdn_site(tmp_path: Path, cdn_url: str) -> tuple[Path, dict]:
    """A one-page site whose images all live on ``cdn_url``; returns its folder and the
    CDN's ground truth (generated under ``tmp_path / "cdn"``)."""
    truth = generate_site(tmp_path / "cdn", pages=1, images=12, seed=62)
    site = tmp_path / "site"
    site.mkdir()
    tags = "".join(f'<img src="{cdn_url}{image["path"]}">' for image in truth["images"])
    (site / "index.html").write_text(f"<html><body>{tags}</body></html>")
    return site, truth


def serve_cdn_page(cluster: Cluster, tmp_path: Path) -> tuple[int, str, dict]:
    """Serve ``cdn_site``'s page (the seed) for a CDN that is not started yet; returns
    the CDN's port, its URL and its ground truth."""
    cdn_port = free_port()
    cdn_url = f"http://127.0.0.1:{cdn_port}"
    site, truth = cdn_site(tmp_path, cdn_url)
    site_port = free_port()
    cluster.site_url = f"http://127.0.0.1:{site_port}/"
    start_server(cluster, "site", site, site_port)
    return cdn_port, cdn_url, truth


def test_images_on_a_cdn_whose_robots_txt_cannot_be_read_wait_for_it(
    cluster: Cluster, tmp_path: Path
):
    cdn_port, cdn_url, truth = serve_cdn_page(cluster, tmp_path)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    cluster.downloader("node", out)
    wait_for_events(out, "robots_retry", 1)  # read again after a pause, still down
    (tmp_path / "cdn" / "robots.txt").write_text("User-agent: *\nDisallow: /img/png/\n")
    cdn_log = start_server(cluster, "cdn", tmp_path / "cdn", cdn_port)
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")

    records = {record["url"]: record for record in read_manifest(out / "manifest.jsonl")}
    assert set(records) == {cdn_url + image["path"] for image in truth["images"]}
    for image in truth["images"]:
        record = records[cdn_url + image["path"]]
        if image["path"].startswith("/img/png/"):
            assert (record["outcome"], record["error"]) == ("failed", "robots_disallowed")
        else:
            assert (record["outcome"], record["sha256"]) == ("stored", image["sha256"]), record
    assert any(r["outcome"] == "stored" for r in records.values())
    gets = [line.split()[1] for line in cdn_log.read_text().splitlines()]
    assert gets.count("/robots.txt") == 1 and not [g for g in gets if g.startswith("/img/png/")]
    (held,) = events(out, "images_held")
    assert (held["images"], held["error"]) == ("12", "connection_error: connection refused")
    (released,) = events(out, "images_released")
    assert (released["images"], released.get("error")) == ("12", None)


def test_images_on_a_cdn_that_never_answers_fail_as_robots_unreachable(
    cluster: Cluster, tmp_path: Path
):
    _, cdn_url, truth = serve_cdn_page(cluster, tmp_path)
    out = tmp_path / "downloads"
    started = time.monotonic()
    cluster.harvester(out, env={**cluster.env, **QUICK_GIVE_UP})
    codes = cluster.wait_all(["harvester"], timeout=60)
    assert codes == {"harvester": 0}, cluster.output("harvester")
    assert time.monotonic() - started >= 3, "read again after 1 and 2 s before giving up"

    records = read_manifest(out / "manifest.jsonl")
    assert sorted(record["url"] for record in records) == sorted(
        cdn_url + image["path"] for image in truth["images"]
    ), "every image has its line"
    assert {(r["outcome"], r["error"]) for r in records} == {
        ("failed", "robots_unreachable: connection_error: connection refused")
    }
    checks = events(out, "robots_retry")
    assert [event["checks"] for event in checks] == ["2"], "3 reads: 1 s and 2 s apart"
    (released,) = events(out, "images_released")
    assert released["images"] == "12" and released["error"].startswith("robots_unreachable: ")


@pytest.fixture
def tls_site(self_signed: ssl.SSLContext) -> Iterator[str]:
    """An https server on 127.0.0.1 with a self-signed certificate."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError), self_signed.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_a_seed_behind_a_certificate_we_cannot_trust_fails_at_once_with_the_reason(
    cluster: Cluster, tmp_path: Path, tls_site: str
):
    cluster.site_url = tls_site
    out = tmp_path / "downloads"
    started = time.monotonic()
    cluster.harvester(out)
    codes = cluster.wait_all(["harvester"], timeout=60)
    assert codes == {"harvester": EXIT_NOTHING_FETCHED}, cluster.output("harvester")
    assert time.monotonic() - started < 30, "a TLS failure is final: no retries"
    reason = "tls_error: certificate verify failed: self-signed certificate"
    (failed,) = events(out, "page_failed")
    assert failed["error"] == "robots_unreachable: " + reason
    assert not events(out, "page_retry")
    assert reason in (tmp_path / "logs" / "harvester.err").read_text()


def test_held_images_survive_a_restart_and_are_fetched_after_it(cluster: Cluster, tmp_path: Path):
    cdn_port, cdn_url, truth = serve_cdn_page(cluster, tmp_path)
    out = tmp_path / "downloads"
    cluster.harvester(out)
    wait_for_events(out, "images_held", 1)
    cluster.started["harvester"].send_signal(signal.SIGTERM)
    assert cluster.wait_all(["harvester"]) == {"harvester": 128 + signal.SIGTERM}

    start_server(cluster, "cdn", tmp_path / "cdn", cdn_port)
    cluster.harvester(out)
    cluster.downloader("node", out)
    codes = cluster.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, cluster.output("harvester")
    assert "already finished" not in cluster.output("harvester")
    records = read_manifest(out / "manifest.jsonl")
    assert sorted((r["url"], r["outcome"], r["sha256"]) for r in records) == sorted(
        (cdn_url + image["path"], "stored", image["sha256"]) for image in truth["images"]
    )
