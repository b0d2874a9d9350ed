"""Start real crawler processes the way a user does, and check what they left behind."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from crawler.demo.site import generate_site
from crawler.output.manifest import read_manifest
from crawler.output.progress import parse_line
from crawler.wire.manager_client import ManagerWire

RUN_TIMEOUT = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def crawler_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["CRAWLER_AUTHKEY"] = secrets.token_urlsafe(24)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Processes:
    """Every process a test started; all are killed at the end, whatever happened."""

    logs: Path
    started: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str], prefix=()):
        out = (self.logs / f"{name}.out").open("wb")
        err = (self.logs / f"{name}.err").open("wb")
        proc = subprocess.Popen([*prefix, *argv], env=env, stdout=out, stderr=err)
        self.started[name] = proc
        return proc

    def crawler(self, name: str, args: list[str], env: dict[str, str], prefix=()):
        return self.start(name, [sys.executable, "-m", "crawler", *args], env, prefix)

    def wait_all(self, names: list[str], timeout: float = RUN_TIMEOUT) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        codes = {}
        for name in names:
            try:
                remaining = max(deadline - time.monotonic(), 0.1)
                codes[name] = self.started[name].wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{name} still running after {timeout} s:\n" + self.output(name)
                ) from None
        return codes

    def wait_for_leases(self, node: str, more_than: int, timeout: float = 20.0) -> None:
        """Until the harvester (asked as ``crawler status`` asks) says ``node`` holds more
        than ``more_than`` leases. A test that stops or kills a node to see its tasks
        come back waits for this: right after a report a node may hold none."""
        host, port = self.listen.rsplit(":", 1)
        watcher = ManagerWire((host, int(port)), self.env["CRAWLER_AUTHKEY"].encode())
        deadline = time.monotonic() + timeout
        held = 0
        while time.monotonic() < deadline:
            held = sum(n["leased"] for n in watcher.status()["nodes"] if n["node"] == node)
            if held > more_than:
                return
            time.sleep(0.01)
        raise AssertionError(f"{node} held {held} leases, not more than {more_than}")

    def output(self, name: str) -> str:
        return "".join(
            f"--- {name}{suffix} ---\n"
            + (self.logs / f"{name}{suffix}").read_text(errors="replace")[-4000:]
            for suffix in (".out", ".err")
        )

    def stop_all(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


class Cluster(Processes):
    """A demo site, a harvester and downloader nodes started as a user would.

    ``harvester_host`` / ``downloader_host`` are command prefixes (``ip netns exec NS``)
    and the address the site and the harvester listen on, for runs across hosts.
    """

    def __init__(
        self, tmp_path: Path, harvester_host=(), downloader_host=(), address="127.0.0.1"
    ) -> None:
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        super().__init__(logs)
        self.tmp = tmp_path
        self.harvester_host, self.downloader_host = list(harvester_host), list(downloader_host)
        self.address = address
        self.env = crawler_env()
        self.listen = f"{address}:{free_port() if address == '127.0.0.1' else 5599}"
        self.access_log = tmp_path / "access.log"
        self.site_url = ""

    def serve_site(
        self,
        image_delay: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        hotlink_protect: bool = False,
        require: tuple[str, ...] = (),
        **generate: int,
    ) -> dict:
        """Generate a demo site, serve it in its own process (over HTTPS with ``tls``, a
        certificate chain and key; ``require``: more flags of the server, such as
        ``--require-cookie``); returns the ground truth."""
        truth = generate_site(self.tmp / "site", **generate)
        self.serve_folder(self.tmp / "site", image_delay, tls, hotlink_protect, require)
        return truth

    def serve_folder(
        self,
        root: Path,
        image_delay: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        hotlink_protect: bool = False,
        require: tuple[str, ...] = (),
    ) -> None:
        """Serve the files under ``root`` with the demo site's server, in its own
        process (options as ``serve_site``'s); sets ``site_url``."""
        port_file = self.tmp / "site.port"
        self.start(
            "site",
            [
                sys.executable,
                "-m",
                "crawler.demo.site",
                "serve",
                str(root),
                "--host",
                self.address,
                "--port-file",
                str(port_file),
                "--access-log",
                str(self.access_log),
                "--image-delay",
                str(image_delay),
                *(("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()),
                *(("--hotlink-protect",) if hotlink_protect else ()),
                *require,
            ],
            self.env,
            self.harvester_host,
        )
        scheme = "https" if tls else "http"
        port = wait_for_file(port_file)
        self.site_url = f"{scheme}://{self.address}:{port}/"
        # The harvester's port was only chosen, not held: the site may have been given it.
        while self.address == "127.0.0.1" and self.listen == f"{self.address}:{port}":
            self.listen = f"{self.address}:{free_port()}"

    def harvester(self, out: Path, *args: str, env: dict | None = None):
        return self.crawler(
            "harvester",
            [
                "harvest",
                self.site_url + "index.html",
                "--listen",
                self.listen,
                "--out",
                str(out),
                "--allow-private",  # the demo site is on a private address
                *args,
            ],
            env or self.env,
            self.harvester_host,
        )

    def check(self, truth: dict, out: Path, downloader_outs: list[Path] | None = None, **kw):
        """``check_crawl`` for this cluster's site; images under ``out`` unless given."""
        return check_crawl(
            self.site_url, truth, out, downloader_outs or [out], self.access_log, **kw
        )

    def downloader(
        self, name: str, out: Path, *args: str, concurrency: int = 8, host: list[str] | None = None
    ):
        """A downloader node (in ``host``, a command prefix, else ``downloader_host``)."""
        return self.crawler(
            name,
            [
                "download",
                "--connect",
                self.listen,
                "--out",
                str(out),
                "--processes",
                "1",
                "--concurrency",
                str(concurrency),
                "--allow-private",  # the demo site is on a private address
                *args,
            ],
            {**self.env, "CRAWLER_NODE_ID": name},
            self.downloader_host if host is None else host,
        )


def wait_for_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def wait_for_text(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_crawl(
    site_url: str,
    truth: dict,
    harvester_out: Path,
    downloader_outs: list[Path],
    access_log: Path,
    nodes: int | None,
    max_gets: int = 1,
    harvester_killed: bool = False,
) -> dict:
    """Assert the crawl found and stored every image exactly once; return the manifest.

    ``max_gets``: how often one image may have been fetched. Above 1 when nodes were
    killed: what they held in flight is fetched again (at-least-once delivery), and
    must still be stored once.
    """
    base = site_url.rstrip("/")
    records = read_manifest(harvester_out / "manifest.jsonl")
    by_url = {r["url"]: r for r in records}
    assert len(by_url) == len(records), "a URL appears twice in the manifest"

    expected = {base + image["path"]: image for image in truth["images"]}
    broken = {base + path for path in truth["broken_images"]}
    assert set(by_url) == set(expected) | broken

    for url, image in expected.items():
        record = by_url[url]
        assert record["outcome"] == "stored", record
        assert record["sha256"] == image["sha256"], url
        assert record["bytes"] == image["bytes"]
        assert (record["width"], record["height"]) == (image["width"], image["height"])
        assert record["page"].startswith(base) and record["node"]
        assert record["attempts"] == 1 or max_gets > 1
        stored = [
            out / record["path"] for out in downloader_outs if (out / record["path"]).exists()
        ]
        assert stored, f"{url}: {record['path']} not found under any output folder"
        assert sha256_of(stored[0]) == image["sha256"]
    for url in broken:
        record = by_url[url]
        assert (record["outcome"], record["status"], record["error"]) == ("failed", 404, "http_404")
        assert record["path"] is None

    # Per folder, one file per content; across the nodes' folders one content may be on
    # two nodes (two URLs with the same bytes, each stored where it was fetched).
    files = [
        p.relative_to(out)
        for out in downloader_outs
        for p in out.rglob("*")
        if p.is_file()
        and p.parent.parent.parent == out
        and not p.parent.parent.name.startswith(".")
    ]
    assert len(set(files)) == truth["distinct_contents"], "an image is missing or stored twice"
    assert not [p for out in downloader_outs for p in (out / ".tmp").glob("*")], "temp file left"

    gets = collections.Counter(
        line.split()[1] for line in access_log.read_text().splitlines() if line.startswith("GET ")
    )
    for image in truth["images"]:
        times = gets[image["path"]]
        assert 1 <= times <= max_gets, f"{image['path']} fetched {times}x"

    events = [
        parse_line(line) for line in (harvester_out / "progress.log").read_text().splitlines()
    ]
    kinds = collections.Counter(e["event"] for e in events)
    for kind in (
        "crawl_started",
        "page_fetched",
        "queued",
        "stored",
        "failed",
        "node_joined",
        "node_left",
        "totals",
        "crawl_finished",
    ):
        assert kinds[kind], f"no {kind} event in the progress log"
    if harvester_killed:
        # The manifest is the record; a kill -9 between a manifest line and its log
        # line loses that one log line (never a manifest line).
        assert len(expected) - 16 <= kinds["stored"] <= len(expected)
        assert kinds["failed"] <= len(broken)
    else:
        assert kinds["stored"] == len(expected) and kinds["failed"] == len(broken)
    joined = {e["node"] for e in events if e["event"] == "node_joined"}
    if nodes is not None:  # None: nodes came and went (killed), count them elsewhere
        assert len(joined) == nodes, joined
    if nodes is not None:
        assert len({r["node"] for r in records if r["outcome"] == "stored"}) == nodes
    assert not [e for e in events if "example.invalid" in e.get("url", "")]
    return {"records": records, "events": events}


def load_truth(site: Path) -> dict:
    return json.loads((site / "ground_truth.json").read_text())
