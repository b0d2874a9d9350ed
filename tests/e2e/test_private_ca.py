"""A crawl of an HTTPS site whose certificate a private CA signed (an intranet), with
real harvester and downloader processes: the CA bundle reaches every request path."""

from __future__ import annotations

import subprocess
import sys

from tests.support.tls import make_ca_files


def test_a_site_behind_a_private_ca_is_crawled_whole_with_its_bundle(cluster, tmp_path):
    ca_pem, chain, key = make_ca_files(tmp_path / "tls")
    truth = cluster.serve_site(pages=4, images=30, seed=7, tls=(chain, key))
    assert cluster.site_url.startswith("https://127.0.0.1:")
    out = tmp_path / "downloads"
    # The harvester by the crawler's own setting, the node by requests' variable.
    cluster.harvester(out, env={**cluster.env, "CRAWLER_CA_BUNDLE": str(ca_pem)})
    node_env = {**cluster.env, "REQUESTS_CA_BUNDLE": str(ca_pem), "CRAWLER_NODE_ID": "node-a"}
    cluster.crawler(
        "node-a",
        [
            *("download", "--connect", cluster.listen, "--out", str(out)),
            *("--processes", "1", "--allow-private"),
        ],
        node_env,
    )
    assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
    cluster.check(truth, out, nodes=1)


def test_without_the_bundle_each_url_fails_as_tls_error_and_nothing_crashes(cluster, tmp_path):
    _ca_pem, chain, key = make_ca_files(tmp_path / "tls")
    cluster.serve_site(pages=2, images=4, seed=7, tls=(chain, key))
    out = tmp_path / "downloads"
    harvester = cluster.harvester(out)
    assert harvester.wait(timeout=60) == 3  # every seed failed: nothing fetched
    log = (out / "progress.log").read_text()
    # The host's robots.txt is read first, and meets the certificate first.
    assert "event=page_failed url=https://" in log
    assert 'error="robots_unreachable: tls_error: certificate verify failed' in log
    assert "Traceback" not in cluster.output("harvester")


def test_a_ca_bundle_that_is_not_there_is_one_line_at_start(cluster, tmp_path):
    for command in (["harvest", "https://127.0.0.1:9/"], ["download", "--processes", "1"]):
        done = subprocess.run(
            [sys.executable, "-m", "crawler", *command, "--out", str(tmp_path / "out")],
            env={**cluster.env, "CRAWLER_CA_BUNDLE": str(tmp_path / "missing.pem")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"crawler {command[0]}: error: ca_bundle: no readable CA bundle (file or "
            f"folder) at '{tmp_path / 'missing.pem'}'"
        )
    assert not (tmp_path / "out" / ".state").exists()
