"""The whole product on one machine: a real site, a harvester, two downloader processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.demosite import generate_site
from tests.e2e.cluster import (
    Processes,
    check_crawl,
    crawler_env,
    free_port,
    wait_for_file,
    wait_for_text,
)


@pytest.fixture
def processes(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    yield procs
    procs.stop_all()


def start_site(
    processes: Processes, site: Path, tmp_path: Path, env: dict, prefix=(), host: str = "127.0.0.1"
) -> str:
    port_file = tmp_path / "site.port"
    processes.start(
        "site",
        [
            sys.executable,
            "-m",
            "crawler.demosite",
            "serve",
            str(site),
            "--host",
            host,
            "--port-file",
            str(port_file),
            "--access-log",
            str(tmp_path / "access.log"),
        ],
        env,
        list(prefix),
    )
    return f"http://{host}:{wait_for_file(port_file)}/"


def test_harvester_and_two_downloaders_store_every_image_once(processes, tmp_path):
    site = tmp_path / "site"
    truth = generate_site(site, pages=20, images=160, seed=7)
    env = crawler_env()
    site_url = start_site(processes, site, tmp_path, env)
    out = tmp_path / "downloads"
    listen = f"127.0.0.1:{free_port()}"

    # Downloaders first: they must wait for the harvester, not give up.
    for name in ("node-a", "node-b"):
        processes.crawler(
            name,
            [
                "download",
                "--connect",
                listen,
                "--out",
                str(out),
                "--processes",
                "1",
                "--concurrency",
                "8",
            ],
            {**env, "CRAWLER_NODE_ID": name},
        )
    for name in ("node-a", "node-b"):
        wait_for_text(tmp_path / "logs" / f"{name}.err", "not reachable")
    processes.crawler(
        "harvester",
        [
            "harvest",
            site_url + "index.html",
            "--listen",
            listen,
            "--out",
            str(out),
            "--max-depth",
            "4",
        ],
        env,
    )
    tail = processes.crawler("tail", ["tail", str(out / "progress.log")], env)

    codes = processes.wait_all(["harvester", "node-a", "node-b", "tail"])
    assert codes == {"harvester": 0, "node-a": 0, "node-b": 0, "tail": 0}, {
        name: processes.output(name) for name in codes
    }
    check_crawl(site_url, truth, out, [out], tmp_path / "access.log", nodes=2)

    summary = (tmp_path / "logs" / "harvester.out").read_text()
    assert f"{len(truth['images']) + len(truth['broken_images'])} images found" in summary
    assert f"{len(truth['images'])} stored, {len(truth['broken_images'])} failed" in summary
    node_a = (tmp_path / "logs" / "node-a.err").read_text()
    assert "waiting for it" in node_a and "connected to harvester" in node_a
    tail_out = (tmp_path / "logs" / "tail.out").read_text()
    assert "event=crawl_finished" in tail_out
    assert f"stored {len(truth['images'])}" in tail_out and "[finished]" in tail_out
    assert tail.returncode == 0


def test_download_node_with_several_processes(processes, tmp_path):
    site = tmp_path / "site"
    truth = generate_site(site, pages=6, images=40, seed=3)
    env = crawler_env()
    site_url = start_site(processes, site, tmp_path, env)
    out = tmp_path / "downloads"
    listen = f"127.0.0.1:{free_port()}"
    processes.crawler(
        "harvester",
        ["harvest", site_url + "index.html", "--listen", listen, "--out", str(out)],
        env,
    )
    processes.crawler(
        "node",
        [
            "download",
            "--connect",
            listen,
            "--out",
            str(out),
            "--processes",
            "2",
            "--concurrency",
            "4",
        ],
        env,
    )
    codes = processes.wait_all(["harvester", "node"])
    assert codes == {"harvester": 0, "node": 0}, processes.output("node")
    result = check_crawl(site_url, truth, out, [out], tmp_path / "access.log", nodes=2)
    # One node, two processes: each child reports as <node id>-<index>.
    stored_by = {r["node"] for r in result["records"] if r["outcome"] == "stored"}
    assert len({node.rsplit("-", 1)[0] for node in stored_by}) == 1
    assert {node.rsplit("-", 1)[1] for node in stored_by} == {"0", "1"}


def test_user_mistakes_get_one_line_and_exit_code_2(tmp_path):
    env = crawler_env()
    loose_key = tmp_path / "key"
    loose_key.write_text("a" * 32)
    loose_key.chmod(0o644)
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[crawl]\nmax_depht = 3\n")
    cases = [
        (["harvest", "ftp://example.org/"], env, "seed is not an http(s) URL"),
        (["harvest", "http://127.0.0.1:9/", "--config", str(bad_config)], env, "crawl.max_depht"),
        (["harvest", "http://127.0.0.1:9/", "--max-depth", "-1"], env, "--max-depth"),
        (["harvest", "http://127.0.0.1:9/", "--listen", "nowhere"], env, "listen"),
        (["download", "--authkey-file", str(loose_key)], env, "chmod 600"),
        (["download"], {k: v for k, v in env.items() if k != "CRAWLER_AUTHKEY"}, "CRAWLER_AUTHKEY"),
        (
            ["harvest", "http://127.0.0.1:9/"],
            {**env, "CRAWLER_MAX_PAGES": "many"},
            "CRAWLER_MAX_PAGES",
        ),
    ]
    for args, case_env, expected in cases:
        done = subprocess.run(
            [sys.executable, "-m", "crawler", *args, "--out", str(tmp_path / "o")],
            env=case_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "a" * 32 not in done.stderr
