"""Per-host politeness, measured: concurrency per host and fast hosts' throughput with
and without one slow host, on a real cluster (harvester + 3 downloader processes).

Not a test (timings vary by machine): it prints figures. Run from the repository:
    .venv/bin/python scripts/politeness_bench.py [--fast-hosts 6] [--images 60]
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.config import DownloadConfig, PolitenessConfig
from tests.e2e.cluster import Cluster
from tests.support.hosts_server import HostBehaviour, Hosts

NODES = ("node-a", "node-b", "node-c")


def run(fast_hosts: int, images: int, slow: bool, limit: int, concurrency: int) -> dict:
    behaviours = [HostBehaviour(delay=0.02) for _ in range(fast_hosts)]
    if slow:
        behaviours.append(HostBehaviour(delay=1.0))
    hosts = Hosts(behaviours, images)
    with tempfile.TemporaryDirectory(prefix="politeness-bench-") as scratch:
        cluster = Cluster(Path(scratch))
        try:
            cluster.site_url = hosts.page.origin + "/"
            env = {**cluster.env, "CRAWLER_HOST_CONCURRENCY": str(limit)}
            out = Path(scratch) / "out"
            cluster.harvester(out, env=env)
            for name in NODES:
                cluster.downloader(name, out, concurrency=concurrency)
            codes = cluster.wait_all(["harvester", *NODES], timeout=600)
            if any(codes.values()):
                raise SystemExit(f"a process failed: {codes}\n{cluster.output('harvester')}")
            stored = sum(
                json.loads(line)["outcome"] == "stored"
                for line in (out / "manifest.jsonl").read_text().splitlines()
            )
        finally:
            cluster.stop_all()
            hosts.close()
    fast = [hosts.record(i) for i in range(fast_hosts)]
    first = min(min(r.starts) for r in fast)
    last = max(max(r.ends) for r in fast)
    result = {
        "slow_host": slow,
        "stored": stored,
        "expected": len(behaviours) * images,
        "fast_images_per_s": round(fast_hosts * images / (last - first), 1),
        "fast_seconds": round(last - first, 2),
        "max_open_per_host": [hosts.record(i).max_open for i in range(len(behaviours))],
    }
    if slow:
        slow_record = hosts.record(fast_hosts)
        result["slow_seconds"] = round(max(slow_record.ends) - min(slow_record.starts), 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-hosts", type=int, default=6)
    parser.add_argument("--images", type=int, default=60, help="images per host")
    parser.add_argument(
        "--limit", type=int, default=PolitenessConfig().host_concurrency, help="host_concurrency"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DownloadConfig().concurrency,
        help="per downloader process",
    )
    args = parser.parse_args()
    rows = [
        run(args.fast_hosts, args.images, slow, args.limit, args.concurrency)
        for slow in (False, True)
    ]
    print(f"host_concurrency={args.limit}, 3 downloader processes x {args.concurrency}")
    print(f"{'':14}{'stored':>10}{'fast img/s':>12}{'fast s':>8}  max in flight per host")
    for row in rows:
        label = "one slow host" if row["slow_host"] else "no slow host"
        stored = f"{row['stored']}/{row['expected']}"
        print(
            f"{label:14}{stored:>10}{row['fast_images_per_s']:>12}{row['fast_seconds']:>8}"
            f"  {row['max_open_per_host']}"
        )
    ratio = rows[1]["fast_images_per_s"] / rows[0]["fast_images_per_s"]
    print(f"fast hosts' throughput with a slow host / without: {ratio:.2f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
