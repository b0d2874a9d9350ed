"""The harvester's queue without HTTP: push, lease and acknowledge N tasks over TCP.

A "harvester" process serves a Broker on a SQLite database (as `crawler harvest`
does) and records every final task, as the harvester's main loop would; K client
processes lease batches and report a stored result for each task, as downloader
nodes do (every field of a real result filled, so the wire and the database carry
what they carry in a crawl). Prints tasks/s end to end and the harvester's peak RSS.
With ``--tls``, the same run in plain TCP and then in mutual TLS (certificates from
``crawler keygen --tls``), side by side, and the ratio. Not a test.

    .venv/bin/python scripts/broker_bench.py [--tasks 1000000] [--clients 4] [--batch 256]
        [--tls]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.broker.broker import Broker
from crawler.broker.state import open_database
from crawler.config import TlsConfig
from crawler.download.fetch import new_result
from crawler.wire.certs import write_tls_files
from crawler.wire.manager_client import ManagerWire
from crawler.wire.manager_server import BrokerServer
from crawler.wire.tls import client_context, server_context


def tls_settings(pki: str | None, side: str) -> TlsConfig | None:
    if pki is None:
        return None
    folder = Path(pki)
    ca = str(folder / "ca.pem")
    return TlsConfig(str(folder / f"{side}.pem"), str(folder / f"{side}-key.pem"), ca)


def harvester(
    tasks: int, port_queue, ready, done_queue, authkey: bytes, folder: str, pki: str | None
) -> None:
    db = open_database(Path(folder) / "crawl.db")
    broker = Broker(lease_seconds=600, max_attempts=3, node_timeout=600, db=db)
    tls = tls_settings(pki, "harvester")
    context = server_context(tls) if tls else None
    server = BrokerServer(broker, ("127.0.0.1", 0), authkey, None, context)
    server.start()
    started = time.monotonic()
    chunk = 10_000
    for first in range(0, tasks, chunk):
        broker.add_tasks(
            (f"http://img{n % 50}.test/{n}.jpg", "http://site.test/", "img_src")
            for n in range(first, min(first + chunk, tasks))
        )
    pushed = time.monotonic() - started
    port_queue.put((server.address[1], pushed))
    ready.wait()
    started = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_at_start = usage.ru_utime + usage.ru_stime
    final = 0
    while final < tasks:  # the harvester's loop: take finished tasks, mark them recorded
        finished, _ = broker.take_updates()
        if finished:
            broker.mark_recorded(finished)
            final += len(finished)
        else:
            time.sleep(0.01)
    elapsed = time.monotonic() - started
    broker.close()
    time.sleep(0.5)
    server.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_at_start
    done_queue.put((elapsed, usage.ru_maxrss / 1024, cpu))


def stored_result(task_id: int, url: str, node: str) -> dict:
    """What a downloader reports for a stored image, every field filled as it would be."""
    digest = f"{task_id:064x}"
    return {
        **new_result(task_id, url, node).to_wire(),
        "outcome": "stored",
        "status": 200,
        "bytes": 40_000 + task_id % 40_000,
        "sha256": digest,
        "content_type": "image/jpeg",
        "declared_type": "image/jpeg",
        "path": f"img{task_id % 50}.test/{digest[:2]}/{digest}.jpg",
        "width": 320,
        "height": 240,
        "elapsed": 0.0123,
    }


def client(port: int, authkey: bytes, batch: int, node: str, counts, pki: str | None) -> None:
    tls = tls_settings(pki, "node")
    context = client_context(tls) if tls else None
    broker = ManagerWire(("127.0.0.1", port), authkey, 10.0, context)
    broker.join(node, {"host": "bench", "pid": os.getpid(), "concurrency": batch})
    handled = 0
    while True:
        reply = broker.lease_batch(node, batch, 1.0)
        tasks = reply["tasks"]
        if tasks:
            broker.report_results(node, [stored_result(task[0], task[1], node) for task in tasks])
            handled += len(tasks)
        elif reply["done"]:
            break
    counts.put(handled)


def run(args: argparse.Namespace, pki: str | None) -> tuple[float, int]:
    """One run: tasks/s and how many tasks the clients handled."""
    authkey = secrets.token_bytes(32)
    context = multiprocessing.get_context("spawn")
    port_queue, done_queue, counts = context.Queue(), context.Queue(), context.Queue()
    ready = context.Event()
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as folder:
        server = context.Process(
            target=harvester,
            args=(args.tasks, port_queue, ready, done_queue, authkey, folder, pki),
        )
        server.start()
        port, pushed = port_queue.get(timeout=3600)
        clients = [
            context.Process(target=client, args=(port, authkey, args.batch, f"c{i}", counts, pki))
            for i in range(args.clients)
        ]
        for process in clients:
            process.start()
        ready.set()
        elapsed, rss_mb, cpu = done_queue.get(timeout=3600)
        handled = sum(counts.get(timeout=60) for _ in clients)
        for process in [*clients, server]:
            process.join(timeout=30)
    rate = args.tasks / elapsed
    print(
        f"{'mutual TLS' if pki else 'plain TCP'}: {args.tasks} tasks: pushed in {pushed:.1f} s "
        f"({args.tasks / pushed:,.0f}/s); "
        f"leased and acknowledged by {args.clients} client processes (batch {args.batch}) "
        f"in {elapsed:.1f} s: {rate:,.0f} tasks/s; "
        f"harvester CPU {cpu:.1f} s ({cpu / args.tasks * 1e6:.0f} us/task), "
        f"peak RSS {rss_mb:.0f} MB; handled {handled}",
        flush=True,
    )
    return rate, handled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tls", action="store_true", help="plain TCP, then mutual TLS")
    args = parser.parse_args()
    plain, handled = run(args, None)
    ok = handled == args.tasks
    if args.tls:
        with tempfile.TemporaryDirectory(prefix="broker-bench-tls-") as pki:
            write_tls_files(Path(pki) / "pki")
            encrypted, handled = run(args, str(Path(pki) / "pki"))
        ok = ok and handled == args.tasks
        print(f"TLS / plain: {encrypted / plain:.2f} of the tasks/s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
