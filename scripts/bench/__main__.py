"""Benchmark driver: for each site, generate it, then for each latency and tool serve it
with a fresh nginx, run the tool in a clean folder, measure; print one table per site
(plus JSON).

    PYTHONPATH=scripts .bench-venv/bin/python -m bench [--sites images,small,heavy]
        [--pages N] [--images N] [--page-kb LOW-HIGH] [--latency 0,50]
        [--tools ours,scrapy,gevent-crawl] [--json FILE]
(``bash scripts/bench.sh ARGS`` does the installing and then exactly this.)

The sites and the tools each one runs by default are in sites.py: ``images`` (200 pages,
10,000 images, latency on images only; every tool), ``small`` (5,001 pages of 3-5 KB, 10,000
images) and ``heavy`` (3,001 pages of 30-150 KB, 6,000 images), both with the latency on
every response and run by the crawlers only (ours, scrapy, gevent-crawl). --pages,
--images, --page-kb and --tools, when given, apply to every site chosen.

Runs go one after the other so that they never compete for the two cores; each one is
bounded by --timeout and its whole process tree is killed when it ends, however it ends.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import measure, nginx, profile, report, sites, tools

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sites",
        default=",".join(sites.PRESETS),
        help=f"the sites to run, of {', '.join(sites.PRESETS)} (default: all, in this order)",
    )
    parser.add_argument("--images", type=int, help="image URLs on each site (default: preset)")
    parser.add_argument("--pages", type=int, help="HTML pages on each site (default: preset)")
    parser.add_argument(
        "--page-kb",
        metavar="LOW-HIGH",
        help="size of each page in KB, for the generator (default: preset; heavy 30-150)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--image-bytes",
        default="2000-80000",
        metavar="LOW-HIGH",
        help="encoded size of each image, drawn uniformly from this range (default 2-80 KB)",
    )
    parser.add_argument(
        "--latency",
        default="0,50",
        help="ms added to each image response (to every response on small and heavy)",
    )
    parser.add_argument(
        "--tools",
        help=f"of {', '.join(tools.TOOLS)}, for every site (default: each site's own list)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run at most")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per tool and latency; the table shows medians"
    )
    parser.add_argument("--processes", type=int, default=2, help="processes per tool")
    parser.add_argument("--concurrency", type=int, default=128, help="in flight per process")
    parser.add_argument("--ours-processes", type=int, help="default: --processes")
    # Our defaults are the fastest of the settings tried (see scripts/bench/tools.py).
    parser.add_argument("--ours-concurrency", type=int, default=256, help="default: 256")
    parser.add_argument(
        "--ours-host-concurrency",
        type=int,
        default=4096,
        help="CRAWLER_HOST_CONCURRENCY (default 4096: above what the nodes can hold)",
    )
    parser.add_argument(
        "--ours-env",
        action="append",
        default=[],
        metavar="CRAWLER_KEY=VALUE",
        help="extra setting for our crawler, e.g. CRAWLER_PAGE_WORKERS=8 (repeatable)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy every tool process (perturbs timings)"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--project-bin", type=Path, default=ROOT / ".venv" / "bin")
    args = parser.parse_args(argv)
    # Absolute: nginx would take a relative path against its own prefix.
    args.workdir = args.workdir.resolve()
    args.latencies = [int(x) for x in args.latency.split(",") if x.strip()]
    args.site_list = list(dict.fromkeys(s.strip() for s in args.sites.split(",") if s.strip()))
    unknown = set(args.site_list) - set(sites.PRESETS)
    if unknown or not args.site_list:
        parser.error(
            f"unknown sites: {', '.join(sorted(unknown))} (know {', '.join(sites.PRESETS)})"
        )
    args.tool_list = [t.strip() for t in (args.tools or "").split(",") if t.strip()]
    unknown = set(args.tool_list) - set(tools.TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))} (know {', '.join(tools.TOOLS)})")
    for item in args.ours_env:
        if not item.startswith("CRAWLER_") or "=" not in item:
            parser.error(f"--ours-env wants CRAWLER_KEY=VALUE, not {item!r}")
    return args


def run_one(
    args: argparse.Namespace,
    settings: tools.Settings,
    site: sites.Site,
    tool: str,
    latency: int,
    folder: Path,
    truth: dict,
    attempt: int = 0,
) -> dict:
    rundir = args.workdir / "runs" / site.name / f"{tool}-{latency}ms" / f"run{attempt + 1}"
    shutil.rmtree(rundir.parent if attempt == 0 else rundir, ignore_errors=True)
    out = rundir / "out"
    out.mkdir(parents=True)
    # Write the previous run's files to disk now: else this run's processes would pay
    # for that write-back (the kernel throttles a writer while too much is dirty).
    os.sync()
    # Other work on the machine skews every figure; the load average says how much.
    load = [round(x, 2) for x in os.getloadavg()]
    server = nginx.Nginx(rundir / "nginx", folder, latency, site.every_response)
    server.start()
    runner = measure.ToolRun(rundir)
    profilers: dict[str, subprocess.Popen | None] = {}
    try:
        sample = truth["images"][len(truth["images"]) // 2]
        check = nginx.check_delay(server.url, sample["path"], sample["sha256"], latency)
        page = truth["pages"][0]
        page_sha = hashlib.sha256((folder / page.lstrip("/")).read_bytes()).hexdigest()
        page_delay = latency if site.every_response else 0
        page_check = nginx.check_delay(server.url, page, page_sha, page_delay, "text/html")
        urls = [server.url.rstrip("/") + image["path"] for image in truth["images"]]
        urls += [server.url.rstrip("/") + path for path in truth["broken_images"]]
        urls_file = rundir / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        target = tools.Target(server.url, urls_file, len(urls), out, rundir)

        def start_profiles(pids: dict[str, int]) -> None:
            if args.profile:
                for role, pid in pids.items():
                    profilers[role] = profile.start(pid, rundir / f"profile-{role}.txt")

        print(f"--- {site.name}: {tool}, {latency} ms: running (logs in {rundir})", flush=True)
        began = time.time()
        result = runner.run(tools.launches(tool, target, settings), args.timeout, start_profiles)
    finally:
        runner.kill_all()
        nginx_cpu = server.cpu_seconds()
        server.stop()
        for proc in profilers.values():
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    requests = nginx.read_access_log(server.access_log, set(truth["broken_images"]))
    summary = {"site": site.name, **summarize(tool, latency, rundir, result, truth, requests)}
    summary.update(
        attempt=attempt + 1,
        load_before=load,
        nginx_check=check,
        nginx_page_check=page_check,
        nginx_cpu_s=round(nginx_cpu, 2),
        first_image_s=_since(began, requests.first_image_at),
        last_image_s=_since(began, requests.last_image_at),
    )
    for role in profilers:
        raw = rundir / f"profile-{role}.txt"
        if raw.exists():
            summary.setdefault("profile", {})[role] = profile.summarize(raw)
            if tool.startswith("ours") and role == "harvester":
                summary["profile"][role]["stages"] = profile.stages(raw)
    return summary


def _since(began: float, when: float | None) -> float | None:
    return None if when is None else round(when - began, 2)


def summarize(
    tool: str,
    latency: int,
    rundir: Path,
    result: measure.RunResult,
    truth: dict,
    requests: nginx.Requests,
) -> dict:
    """One run's figures: what was stored (by content), time, CPU, memory, requests."""
    found = measure.stored_hashes(rundir / "out")
    wanted = {image["sha256"] for image in truth["images"]}
    stored = len(wanted & found.keys())
    pages = requests.pages
    # wait4 counts everything a tool reaped; a killed tool's orphans are reaped by init
    # instead, and then only the samples saw them.
    cpu = max(result.cpu_wait4, result.cpu_sampled)
    # User time alone: what a tool's own code costs. System time is mostly the kernel
    # creating and filling files, the same work for every tool, yet on this kind of VM
    # its cost per new file varies tenfold from run to run.
    user = max(result.user_wait4, result.user_sampled)
    by_role: dict[str, float] = {}
    for proc in result.procs:
        by_role[proc.role] = max(by_role.get(proc.role, 0.0), proc.peak_rss / 2**20)
    summary = {
        "tool": tool,
        "latency_ms": latency,
        "stored": stored,
        "expected": truth["distinct_contents"],
        "wall_s": round(result.wall, 2),
        "images_per_s": round(stored / result.wall, 1) if result.wall else 0.0,
        "pages_fetched": pages,
        "pages_per_s": round(pages / result.wall, 1) if result.wall else 0.0,
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_page": round(1000 * cpu / pages, 2) if pages else None,
        "cpu_s_wait4": round(result.cpu_wait4, 2),
        "cpu_s_sampled": round(result.cpu_sampled, 2),
        "cpu_s_per_1k": round(1000 * cpu / stored, 3) if stored else None,
        "user_s": round(user, 2),
        "user_s_per_1k": round(1000 * user / stored, 3) if stored else None,
        "peak_rss_mb": round(max(by_role.values(), default=0.0), 1),
        "peak_rss_mb_by_role": {role: round(mb, 1) for role, mb in by_role.items()},
        "peak_rss_mb_wait4": round(result.maxrss_wait4 / 2**20, 1),
        "processes": [
            {
                "role": p.role,
                "pid": p.pid,
                "peak_rss_mb": round(p.peak_rss / 2**20, 1),
                "cpu_s": round(p.cpu, 2),
                "cmd": p.cmd[:200],
            }
            for p in result.procs
        ],
        "duplicate_gets": requests.duplicates,
        "requests": vars(requests),
        "exit_codes": result.exit_codes,
        "timed_out": result.timed_out,
        "files_in_out": sum(found.values()),
        "rundir": str(rundir),
    }
    harvester_out = rundir / "harvester.stdout"
    if harvester_out.exists():
        summary["harvester_summary"] = harvester_out.read_text().strip()[-500:]
    return summary


def code_version() -> str:
    """The commit our crawler ran from, with "+dirty" when its files were being edited."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "crawler"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Both, explicitly: a shell starts background jobs with SIGINT ignored, and Python
    # then leaves it ignored; the tools run in sessions of their own and never see it.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    args.workdir.mkdir(parents=True, exist_ok=True)
    chosen_sites = sites.choose(args)
    settings = tools.Settings(
        project_bin=args.project_bin,
        concurrency=args.concurrency,
        processes=args.processes,
        ours_host_concurrency=args.ours_host_concurrency,
        ours_env=dict(item.split("=", 1) for item in args.ours_env),
    )
    ours_settings = tools.Settings(
        **{
            **vars(settings),
            "processes": args.ours_processes or args.processes,
            "concurrency": args.ours_concurrency or args.concurrency,
        }
    )
    params = {k: v for k, v in vars(args).items() if k not in ("workdir", "project_bin", "json")}
    params["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    params["crawler_version"] = code_version()
    infos: dict[str, dict] = {}
    results: list[dict] = []
    failed = False
    try:
        for site in chosen_sites:
            folder, truth = sites.generate(site, args)
            infos[site.name] = sites.summary(site, folder, truth)
            print(sites.describe(infos[site.name], args.latencies), flush=True)
            for latency, attempt, tool in itertools.product(
                args.latencies, range(args.repeat), site.tools
            ):
                # Repeats go round the tools (ours, scrapy, ..., ours, scrapy, ...), so that
                # a slow spell of this machine does not land on one tool's runs only.
                chosen = ours_settings if tool.startswith("ours") else settings
                result = run_one(args, chosen, site, tool, latency, folder, truth, attempt)
                results.append(result)
                bad = result["timed_out"] or any(result["exit_codes"].values())
                failed |= bad
                print(
                    f"    {result['stored']}/{result['expected']} stored, "
                    f"{result['pages_fetched']} pages fetched in {result['wall_s']} s "
                    f"(images served from {result['first_image_s']} s to "
                    f"{result['last_image_s']} s), CPU {result['cpu_s']} s "
                    f"(nginx {result['nginx_cpu_s']} s), load before {result['load_before'][0]}, "
                    f"exit codes {result['exit_codes']}"
                    + (", TIMED OUT" if result["timed_out"] else ""),
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted: results so far follow", file=sys.stderr)
        failed = True
    params["json"] = str(args.json)
    report.write_json(args.json, params, infos, results)
    rows = report.medians(results)
    for name, info in infos.items():
        print()
        print(sites.describe(info, args.latencies))
        print(report.table([row for row in rows if row["site"] == name]))
    for result in results:
        for role, summary in result.get("profile", {}).items():
            title = f"{result['site']}: {result['tool']} {result['latency_ms']} ms {role}"
            profile.print_summary(title, summary)
    print(f"\nresults: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
