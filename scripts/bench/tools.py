"""The command lines of the contenders, all pointed at the same local site.

The three crawlers (ours, Scrapy, gevent-crawl) start from /index.html and must find the
images; the two list downloaders (img2dataset, gevent) get the ground-truth URL list,
broken ones included, as if a perfect crawl had already happened. Every tool gets the
same budget: both cores and about 128 requests in flight at once (gevent-crawl and
Scrapy run in one process, as they are written to).
"""

from __future__ import annotations

import math
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import Launch
from bench.nginx import free_port

HERE = Path(__file__).resolve().parent
TOOLS = (
    *("ours", "ours-nosync", "ours-metrics"),
    *("scrapy", "img2dataset", "gevent", "gevent-crawl"),
)


@dataclass
class Settings:
    """Knobs, settable from the command line, so alternatives can be tried and compared."""

    project_bin: Path  # the project's .venv/bin
    concurrency: int = 128  # requests in flight per process (greenlets, threads)
    processes: int = 2
    ours_host_concurrency: int = 4096
    ours_env: dict[str, str] = field(default_factory=dict)  # extra CRAWLER_* settings
    max_depth: int = 10


@dataclass
class Target:
    """One run's site and folders."""

    site_url: str  # http://127.0.0.1:PORT/
    urls_file: Path  # every image URL of the ground truth, broken ones included
    n_urls: int
    out: Path  # the tool's output folder, empty at start
    workdir: Path  # logs, scratch


def base_env() -> dict[str, str]:
    """Our environment minus any CRAWLER_* setting (the crawler rejects unknown ones)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launches(tool: str, target: Target, settings: Settings) -> list[Launch]:
    return {
        "ours": ours,
        "ours-nosync": ours_nosync,
        "ours-metrics": ours_metrics,
        "scrapy": scrapy,
        "img2dataset": img2dataset,
        "gevent": gevent_list,
        "gevent-crawl": gevent_crawl,
    }[tool](target, settings)


def ours(target: Target, settings: Settings) -> list[Launch]:
    """A harvester and one downloader node with N processes, keyed by a fresh secret.

    Host concurrency is raised because the site is our own nginx: the default of 8 is
    politeness towards strangers' servers, not a limit of the crawler. It is set well
    above what the nodes can hold (processes x (concurrency + batch) = 1024 here, up to
    twice that with results not yet reported), because the harvester's page fetches
    share the host's slots: when the nodes hold every slot, page discovery crawls
    (76 -> 100 pages in 8 s at a limit of 256) while the task queue drains. Linger is
    cut so that waiting for absent downloaders to hear "done" is not counted.

    Tried on the 10,000-image site, 2 cores (median wall of 2-3 runs, 0 / 50 ms):
      host limit 256,  2 processes x 128: 22.2 / 22.6 s
      host limit 1024, 2 x 128: 21.9 / 21.6 s;  2 x 256: 21.0 / 20.1 s
      host limit 4096, 2 x 256: 20.2 / 20.1 s   <- the default
      host limit 1024: 1 x 256: 26.6 s;  3 x 256: 21.2 / 23.4 s;  2 x 64: 25.7 s;
      2 x 512: 22.6 s;  2 x 256 with batch_size 64: 21.9 s;  with 8 page workers: 21.9 s
    """
    crawler = str(settings.project_bin / "crawler")
    env = base_env()
    env.update(
        CRAWLER_AUTHKEY=secrets.token_urlsafe(32),  # goes to the children only, never printed
        CRAWLER_HOST_CONCURRENCY=str(settings.ours_host_concurrency),
        CRAWLER_LINGER_SECONDS="0.5",
    )
    env.update(settings.ours_env)
    listen = f"127.0.0.1:{free_port()}"
    out = str(target.out)
    harvest = [crawler, "harvest", target.site_url + "index.html", "--allow-private"]
    harvest += ["--out", out, "--listen", listen, "--max-depth", str(settings.max_depth)]
    harvest += ["--max-pages", "0"]
    download = [crawler, "download", "--connect", listen, "--out", out, "--allow-private"]
    download += ["--processes", str(settings.processes)]
    download += ["--concurrency", str(settings.concurrency)]
    return [Launch("harvester", harvest, env), Launch("downloader", download, env)]


def ours_nosync(target: Target, settings: Settings) -> list[Launch]:
    """Ours with ``sync_files = false``: files left to the kernel's write-back, as every
    baseline leaves them. By default ours makes each batch durable before reporting it,
    work the others do not do (and a cost their CPU figures never show)."""
    launches = ours(target, settings)
    for launch in launches:
        launch.env["CRAWLER_SYNC_FILES"] = "false"
    return launches


def ours_metrics(target: Target, settings: Settings) -> list[Launch]:
    """Ours with ``--metrics`` on the harvester and the node: what counting costs (the
    scrapes themselves, every 15 s or so in a real setup, are left out: nobody scrapes,
    and ``metrics_linger = 0`` ends each command at once)."""
    launches = ours(target, settings)
    for launch in launches:
        launch.argv += ["--metrics", f"127.0.0.1:{free_port()}"]
        launch.env["CRAWLER_METRICS_LINGER"] = "0"
    return launches


def scrapy(target: Target, settings: Settings) -> list[Launch]:
    """One Scrapy process (Twisted is single-threaded: that is how Scrapy runs)."""
    argv = [str(Path(sys.executable).parent / "scrapy"), "runspider"]
    argv += [str(HERE / "scrapy_spider.py"), "-a", f"start={target.site_url}index.html"]
    for key, value in (
        ("FILES_STORE", str(target.out)),
        ("CONCURRENT_REQUESTS", settings.concurrency),
        ("CONCURRENT_REQUESTS_PER_DOMAIN", settings.concurrency),
        ("REACTOR_THREADPOOL_MAXSIZE", 20),
        ("DEPTH_LIMIT", settings.max_depth),
    ):
        argv += ["-s", f"{key}={value}"]
    return [Launch("scrapy", argv, base_env())]


def img2dataset(target: Target, settings: Settings) -> list[Launch]:
    """Original bytes (no resize, no re-encoding), no hashes or EXIF computed, no retries.

    Shards of an eighth of the list, so both processes have work until the end.
    """
    per_shard = max(50, math.ceil(target.n_urls / 8))
    argv = [str(Path(sys.executable).parent / "img2dataset"), "--url_list", str(target.urls_file)]
    for key, value in (
        ("output_folder", target.out),
        ("input_format", "txt"),
        ("output_format", "files"),
        ("processes_count", settings.processes),
        ("thread_count", settings.concurrency),
        ("resize_mode", "no"),
        ("disable_all_reencoding", "True"),
        ("compute_hash", "None"),
        ("extract_exif", "False"),
        ("timeout", 30),
        ("retries", 0),
        ("number_sample_per_shard", per_shard),
        ("enable_wandb", "False"),
    ):
        argv += [f"--{key}", str(value)]
    env = base_env()
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"  # else importing it asks the internet for news
    return [Launch("img2dataset", argv, env)]


def gevent_list(target: Target, settings: Settings) -> list[Launch]:
    argv = [sys.executable, str(HERE / "gevent_list.py"), str(target.urls_file), str(target.out)]
    argv += ["--processes", str(settings.processes), "--concurrency", str(settings.concurrency)]
    return [Launch("gevent", argv, base_env())]


def gevent_crawl(target: Target, settings: Settings) -> list[Launch]:
    """One process, `concurrency` greenlets (a crawl written this way has no parent to
    split the work: the pages it finds decide what comes next)."""
    argv = [sys.executable, str(HERE / "gevent_crawl.py"), target.site_url + "index.html"]
    argv += [str(target.out), "--concurrency", str(settings.concurrency)]
    argv += ["--max-depth", str(settings.max_depth)]
    return [Launch("gevent-crawl", argv, base_env())]
