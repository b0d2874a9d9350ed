"""Command line: parse arguments, build a config, call the package. No logic lives here.

Errors a user can fix (``CrawlerError``) become one line on stderr and the exit code
of their class (listed in ``errors.py``).
This module imports nothing that opens sockets: the ``download`` command must
monkey-patch with gevent before ``socket`` or ``ssl`` is imported anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from crawler.config import Config, load_config, per_core
from crawler.errors import ConfigError, CrawlerError

EXIT_MISMATCH = 1  # crawler verify: a stored file was wrong or missing
EXIT_INTERRUPTED = 130
HARVEST_FLAGS = (
    *("out", "listen", "state", "log", "max_depth", "max_pages", "max_images", "obey_robots"),
    *("allow_hosts", "allow_subdomains", "prefixes", "include", "exclude", "image_hosts"),
    "obey_nofollow",
    "metrics",
    "sitemaps",
    "render",
    *("for_dataset", "ignore_opt_out", "variants"),
    *("broker", "crawl_name"),
)
DISTRIBUTION = "distributed-image-crawler"
EXAMPLES = {
    "crawler": """\
  crawler keygen ~/.crawler.key
  crawler harvest https://example.org/ --authkey-file ~/.crawler.key
  crawler download --authkey-file ~/.crawler.key
  crawler tail downloads/progress.log
  crawler report downloads""",
    "harvest": """\
  crawler harvest https://example.org/ --max-depth 2 --authkey-file ~/.crawler.key
  crawler harvest https://example.org/ --listen 0.0.0.0:5599 --out /data/crawl
  crawler harvest https://example.org/blog/ --prefix https://example.org/blog/ --exclude '[?]page='
  crawler harvest https://example.org/ --allow-host cdn.example.org --image-host '*.example.org'
  crawler harvest https://example.org/ --retry-failed --only http_503 --only timeout
  crawler harvest https://example.org/ --metrics 9100
  crawler harvest https://example.org/ --render auto
  crawler harvest https://example.org/ --for-dataset --variants largest""",
    "download": """\
  crawler download --authkey-file ~/.crawler.key
  crawler download --connect harvester.example.lan:5599 --out /data/images --processes 4
  crawler download --metrics 0.0.0.0:9101 --processes 4
  AWS_ENDPOINT_URL_S3=http://minio.lan:9000 crawler download --out s3://images/crawl1""",
    "tail": """\
  crawler tail downloads/progress.log
  crawler tail downloads/progress.log --only failed,page_failed""",
    "urls": """\
  crawler urls https://example.org/gallery.html
  crawler urls https://example.org/ --kinds | cut -f1 | sort | uniq -c""",
    "report": """\
  crawler report
  crawler report /data/crawl --max-thumbnails 500
  crawler report /data/crawl --images s3://images/crawl1""",
    "export": """\
  crawler export > images.csv
  crawler export /data/crawl --format jsonl --output images.jsonl
  crawler export /data/crawl --format webdataset --output /data/shards --shard-size 5000
  AWS_ENDPOINT_URL_S3=http://minio.lan:9000 crawler export --format parquet --output s3://sets/a""",
    "status": """\
  crawler status --authkey-file ~/.crawler.key
  crawler status --connect harvester.example.lan:5599 --json""",
    "verify": """\
  crawler verify
  crawler verify /data/crawl --requeue-missing""",
    "keygen": """\
  crawler keygen ~/.crawler.key
  scp -p ~/.crawler.key node1.example.lan:.crawler.key
  crawler keygen --tls ~/.crawler-tls --host harvester.example.lan --host 10.0.0.5""",
}


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: an unknown flag is refused with this command's usage.

    By default argparse hands a subcommand's leftovers to the top-level parser, which
    then prints ``usage: crawler [-h] COMMAND ...`` instead of the command's own.
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


class _VersionAction(argparse.Action):
    """``--version``: looked up only when asked, since importlib.metadata imports socket
    (which must wait for gevent's monkey-patching in ``download``)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version(DISTRIBUTION)
        except PackageNotFoundError:
            text = "unknown (not installed)"
        print(f"{parser.prog} {text}")
        parser.exit()


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (see config/default.toml)")


def _authkey_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--authkey-file", help="file holding the shared key, mode 0600 (else $CRAWLER_AUTHKEY)"
    )


def _images_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images",
        metavar="WHERE",
        help="where the stored images are, if not under OUT: a folder, or the nodes' "
        "store s3://BUCKET/PREFIX",
    )


def _tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", metavar="FILE", help="this side's TLS certificate, PEM")
    parser.add_argument("--tls-key", metavar="FILE", help="its private key, PEM, mode 0600")
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="the CA that signs the other side's certificate (`crawler keygen --tls DIR`)",
    )


def _metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: on "
        "127.0.0.1; off by default)",
    )


def _shared_flags(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("a crawl shared through Redis (README: Scaling out)")
    group.add_argument(
        "--broker",
        metavar="URL",
        help="redis://[:PASSWORD@]HOST:PORT/DB or rediss:// (the password may instead be in "
        "CRAWLER_REDIS_PASSWORD or a 0600 file named by redis_password_file)",
    )
    group.add_argument("--crawl", dest="crawl_name", metavar="NAME", help=what)


def _common(parser: argparse.ArgumentParser) -> None:
    _config_flag(parser)
    parser.add_argument("--out", help="output folder (default: downloads)")
    parser.add_argument(
        "--allow-private",
        action="store_true",
        default=None,
        help="also fetch from loopback/private/link-local addresses (off by default)",
    )
    parser.add_argument(
        "--cookies",
        metavar="FILE",
        help="send the cookies of this cookies.txt (Netscape format, as browsers export "
        "it) to their domains, for pages and images",
    )
    parser.add_argument(
        "--proxy", metavar="URL", help="a forward proxy, http://HOST:PORT (else $HTTP_PROXY)"
    )
    _authkey_flag(parser)
    _tls_flags(parser)


def _with_examples(name: str) -> dict[str, Any]:
    return {
        "epilog": f"examples:\n{EXAMPLES[name]}",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crawler",
        description="Distributed image crawler: harvester and downloader nodes.",
        **_with_examples("crawler"),
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, **_with_examples(name))

    harvest = command("harvest", "crawl pages from seeds and serve image tasks")
    harvest.add_argument("seeds", nargs="*", metavar="SEED_URL")
    _common(harvest)
    _shared_flags(harvest, "the shared crawl to start (with seeds), resume or join")
    harvest.add_argument("--listen", help="HOST:PORT to serve tasks on (default 127.0.0.1:5599)")
    harvest.add_argument("--state", help="state folder (default: OUT/.state)")
    _metrics_flag(harvest)
    harvest.add_argument("--log", help="progress log (default: OUT/progress.log)")
    harvest.add_argument("--max-depth", type=int, help="link hops from a seed (default 5)")
    harvest.add_argument("--max-pages", type=int, help="pages to fetch at most (0: no limit)")
    harvest.add_argument("--max-images", type=int, help="image URLs to queue at most (0: no limit)")
    harvest.add_argument(
        "--ignore-robots", action="store_true", help="do not honour robots.txt (logged)"
    )
    harvest.add_argument(
        "--no-sitemaps",
        dest="sitemaps",
        action="store_false",
        default=None,
        help="do not read the seeds' sitemaps (robots.txt Sitemap: lines, /sitemap.xml)",
    )
    harvest.add_argument(
        "--render",
        choices=("never", "auto", "always"),
        help="render pages in headless Chromium to find the images and links their "
        "scripts make: never (default), auto (pages whose scripts look like they build "
        "images or links, while it pays), always",
    )
    dataset = harvest.add_argument_group("datasets (README: Building a dataset)")
    dataset.add_argument(
        "--for-dataset",
        action="store_true",
        default=None,
        help="record each image's text on every page (OUT/references.jsonl), read "
        "TDMRep, and do not download images that opt out of AI use",
    )
    dataset.add_argument(
        "--ignore-opt-out",
        action="store_true",
        default=None,
        help="download opted-out images all the same (logged)",
    )
    dataset.add_argument(
        "--variants",
        choices=("all", "largest"),
        help="of one srcset/<picture>: fetch all candidates (default) or only the largest",
    )
    scope = harvest.add_argument_group("scope (repeat a flag to give several values)")
    scope.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        metavar="PATTERN",
        help="also crawl pages on this host: example.org, example.org:8080, *.example.org",
    )
    scope.add_argument(
        "--subdomains",
        dest="allow_subdomains",
        action="store_true",
        default=None,
        help="also crawl pages on the seeds' subdomains",
    )
    scope.add_argument(
        "--prefix",
        dest="prefixes",
        action="append",
        metavar="URL",
        help="only crawl pages whose URL starts with this",
    )
    scope.add_argument(
        "--include", action="append", metavar="REGEX", help="only crawl page URLs matching this"
    )
    scope.add_argument(
        "--exclude", action="append", metavar="REGEX", help="never crawl page URLs matching this"
    )
    scope.add_argument(
        "--image-host",
        dest="image_hosts",
        action="append",
        metavar="PATTERN",
        help="take images only from this host (default: any host)",
    )
    scope.add_argument(
        "--obey-nofollow",
        action="store_true",
        default=None,
        help='do not follow rel="nofollow" links (nor any on a robots-nofollow page)',
    )
    retry = harvest.add_argument_group("retrying a crawl that ran before")
    retry.add_argument(
        "--retry-failed",
        action="store_true",
        help="put its failed images back in the queue and resume it to fetch them again",
    )
    retry.add_argument(
        "--recrawl",
        action="store_true",
        help="crawl a finished crawl's pages again with conditional GETs (a 304 reuses what "
        "the page referenced), fetching only image URLs it has not seen; writes "
        "OUT/recrawl.json (new, changed and gone)",
    )
    retry.add_argument(
        "--only",
        action="append",
        metavar="REASON",
        help="retry only images whose error starts with this, e.g. http_503, store_error "
        "(default: every error but robots_disallowed)",
    )

    download = command("download", "run a downloader node")
    download.add_argument("--connect", help="harvester HOST:PORT (default 127.0.0.1:5599)")
    _common(download)
    _shared_flags(download, "the shared crawl to download for")
    download.add_argument("--processes", type=int, help="worker processes (0: one per core)")
    download.add_argument("--concurrency", type=int, help="downloads in flight per process")
    _metrics_flag(download)

    tail = command("tail", "follow a progress log with a live summary")
    tail.add_argument("log", nargs="?", default="downloads/progress.log", type=Path)
    tail.add_argument("--summary-every", type=float, default=5.0, metavar="SECONDS")
    tail.add_argument(
        "--only", metavar="EVENTS", help="print only these events, e.g. page_fetched,totals"
    )
    tail.add_argument(
        "--plain",
        action="store_true",
        help="print log lines and summaries (the default when stdout is not a terminal)",
    )

    urls = command("urls", "print the image URLs one page references")
    urls.add_argument("page", metavar="PAGE_URL")
    urls.add_argument("--kinds", action="store_true", help="also print the markup kind")
    _config_flag(urls)
    urls.add_argument(
        "--allow-private",
        action="store_true",
        default=None,
        help="also fetch from loopback/private/link-local addresses",
    )

    report = command("report", "write OUT/report.html: figures, chart, gallery")
    report.add_argument("out", nargs="?", type=Path, help="output folder (default: downloads)")
    _config_flag(report)
    report.add_argument(
        "--max-thumbnails", type=int, default=2000, metavar="N", help="gallery size (2000)"
    )
    _images_flag(report)

    export = command(
        "export", "the manifest as CSV/JSONL, or the images as WebDataset/Parquet shards"
    )
    export.add_argument("out", nargs="?", type=Path, help="output folder (default: downloads)")
    export.add_argument(
        "--format", choices=("csv", "jsonl", "webdataset", "parquet"), default="csv"
    )
    export.add_argument(
        "--output",
        metavar="WHERE",
        help="csv/jsonl: a file (default: stdout); webdataset/parquet: a folder or an "
        "fsspec URL such as s3://BUCKET/PREFIX (required)",
    )
    export.add_argument(
        "--shard-size", type=int, metavar="N", help="samples per shard (default 10000)"
    )
    export.add_argument(
        "--ignore-opt-out",
        action="store_true",
        default=None,
        help="keep images that opt out of AI use in the shards (logged in the card)",
    )
    export.add_argument(
        "--near-duplicate-distance",
        type=int,
        metavar="BITS",
        help="perceptual-hash distance at or under which images are near-duplicates",
    )
    _images_flag(export)
    _shared_flags(export, "export the whole manifest of this shared crawl (csv or jsonl)")
    _config_flag(export)

    status = command("status", "ask a running harvester how the crawl goes")
    status.add_argument("--connect", help="harvester HOST:PORT (default 127.0.0.1:5599)")
    status.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    _shared_flags(status, "the shared crawl to report on")
    _config_flag(status)
    _authkey_flag(status)
    _tls_flags(status)

    verify = command("verify", "check stored files against the manifest; re-queue bad ones")
    verify.add_argument("out", nargs="?", type=Path, help="output folder (default: downloads)")
    verify.add_argument("--state", help="state folder (default: OUT/.state)")
    verify.add_argument(
        "--requeue-missing",
        action="store_true",
        help="also fetch files that are missing here again (by default only reported: "
        "in a multi-machine crawl they are on the nodes that stored them)",
    )
    _config_flag(verify)

    keygen = command("keygen", "write a new random authkey file (mode 0600), or TLS files")
    keygen.add_argument("path", type=Path, nargs="?", help="the authkey file to write")
    keygen.add_argument(
        "--tls",
        type=Path,
        metavar="DIR",
        help="write a private CA and certificates for the harvester and the nodes in DIR",
    )
    keygen.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name or address nodes reach the harvester by, for its certificate "
        "(repeatable; localhost, 127.0.0.1, ::1 and this machine's name are always in)",
    )
    return parser


def _config(args: argparse.Namespace, flag_names: tuple[str, ...]) -> Config:
    flags = {name: getattr(args, name) for name in flag_names}
    flags["authkey_file"] = args.authkey_file
    flags.update(_tls_settings(args))
    flags["allow_private"] = args.allow_private
    flags["cookies"] = args.cookies
    flags["proxy"] = args.proxy
    return load_config(args.config, os.environ, flags)


def _tls_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls_ca": args.tls_ca}


def _authkey(config: Config) -> bytes:
    from crawler.wire.authkey import load_authkey

    return load_authkey(config.queue.authkey_file, os.environ)


def cmd_harvest(args: argparse.Namespace) -> int:
    from crawler.harvest.harvester import Harvester

    args.obey_robots = False if args.ignore_robots else None
    config = _config(args, HARVEST_FLAGS)
    if config.shared.broker:
        return _harvest_shared(args, config)
    if args.crawl_name:
        raise ConfigError("--crawl NAME goes with --broker redis://...")
    if not args.seeds:
        raise ConfigError("give one or more seed URLs (or --broker URL --crawl NAME to join)")
    if args.only and not args.retry_failed:
        raise ConfigError("--only goes with --retry-failed")
    if args.recrawl and args.retry_failed:
        raise ConfigError("--recrawl and --retry-failed go in separate runs")
    from crawler.objectstore import is_store_url

    if is_store_url(config.output.out):
        raise ConfigError(
            f"--out {config.output.out}: the harvester's --out is a local folder (its "
            "manifest, log and state); give the store to the downloaders, and to "
            "`crawler report` and `crawler export` as --images"
        )
    authkey = _authkey(config)
    if config.tls.enabled:  # unusable TLS files stop the harvester before it makes anything
        from crawler.wire.tls import server_context

        server_context(config.tls)
    harvester = Harvester(config, args.seeds, authkey, recrawl=args.recrawl)
    if args.retry_failed:
        from crawler.harvest.requeue import retry_failed

        output = config.output
        summary = retry_failed(output.state_dir, output.out_dir, harvester.seeds, args.only or ())
        print(summary.line(), flush=True)
    return harvester.run()


def _harvest_shared(args: argparse.Namespace, config: Config) -> int:
    from crawler.shared.harvester import SharedHarvester, unsupported

    refused = unsupported(config, args.retry_failed, args.recrawl)
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not supported in a crawl shared through Redis")
    return SharedHarvester(config, args.seeds).run()


def _shared_broker(args: argparse.Namespace) -> None:
    """``--broker URL`` is where a node (or ``status``) connects to: ``--connect``."""
    if getattr(args, "broker", None):
        if getattr(args, "connect", None):
            raise ConfigError("give --broker or --connect, not both")
        args.connect = args.broker


def cmd_download(args: argparse.Namespace, argv: list[str]) -> int:
    from crawler.download import processes as nodes

    _shared_broker(args)
    config = _config(
        args, ("out", "connect", "processes", "concurrency", "metrics", "broker", "crawl_name")
    )
    if (
        config.download.connect.startswith(("redis://", "rediss://"))
        and not config.shared.crawl_name
    ):
        raise ConfigError("--broker redis://... needs --crawl NAME")
    # A shared crawl's nodes authenticate to Redis (its password), not with an authkey.
    authkey = b"" if config.shared.crawl_name and config.shared.broker else _authkey(config)
    processes = per_core(config.download.processes)
    node_id = nodes.default_node_id()
    if processes > 1:
        from crawler.metrics import process_group_metrics

        if config.tls.enabled:  # TLS files checked once, here (this process never patches)
            from crawler.wire.tls import client_context

            client_context(config.tls)

        metrics = process_group_metrics(config.metrics)
        try:
            linger = config.metrics.metrics_linger
            return nodes.run_node_processes(argv, processes, node_id, metrics, linger)
        finally:
            if metrics is not None:
                metrics.close()
    from crawler.download.entry import run_node  # patches for gevent: first

    return run_node(config, authkey, node_id)


def cmd_tail(args: argparse.Namespace) -> int:
    from crawler.output.progress import tail_log

    if not (args.plain or args.only) and sys.stdout.isatty():
        from crawler.output.tailview import watch

        return watch(args.log)
    only = frozenset(args.only.split(",")) if args.only else None
    return tail_log(args.log, args.summary_every, only)


def cmd_urls(args: argparse.Namespace) -> int:
    from crawler.harvest.harvester import check_seeds
    from crawler.web.pages import fetch_page

    config = load_config(args.config, os.environ, {"allow_private": args.allow_private})
    (url,) = check_seeds([args.page])
    page = fetch_page(url, 0, config.crawl)
    if page.error:
        print(f"crawler urls: {url}: {page.error}", file=sys.stderr)
        return 1
    for ref in page.images:
        print(f"{ref.kind}\t{ref.url}" if args.kinds else ref.url)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from crawler.output.status import fetch_status, format_status

    _shared_broker(args)
    flags = {"connect": args.connect, "authkey_file": args.authkey_file, **_tls_settings(args)}
    flags |= {"broker": args.broker, "crawl_name": args.crawl_name}
    config = load_config(args.config, os.environ, flags)
    if config.shared.broker:
        from crawler.shared.status import fetch_shared_status, format_shared_status
        from crawler.urls import without_userinfo

        status = fetch_shared_status(config)
        where = without_userinfo(config.shared.broker)
        print(
            json.dumps(status, indent=2, sort_keys=True)
            if args.json
            else format_shared_status(status, where)
        )
        return 0
    status = fetch_status(config.download.connect, _authkey(config), config.tls)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status, config.download.connect))
    return 0


def _output_folder(args: argparse.Namespace) -> tuple[Path, Config]:
    flags = {"out": str(args.out) if args.out else None}
    config = load_config(args.config, os.environ, flags)
    return config.output.out_dir, config


def cmd_report(args: argparse.Namespace) -> int:
    from crawler.output.report import write_report

    out, config = _output_folder(args)
    summary = write_report(
        out, max_thumbnails=args.max_thumbnails, log=config.output.log_path, images=args.images
    )
    print(summary.line())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    flags = {
        "out": str(args.out) if args.out else None,
        "shard_size": args.shard_size,
        "ignore_opt_out": args.ignore_opt_out,
        "near_duplicate_distance": args.near_duplicate_distance,
        "broker": args.broker,
        "crawl_name": args.crawl_name,
    }
    config = load_config(args.config, os.environ, flags)
    out = config.output.out_dir
    if config.shared.broker:
        from crawler.shared.status import export_shared

        if args.format not in ("csv", "jsonl"):
            raise ConfigError("--broker: the shared crawl's manifest exports as csv or jsonl")
        rows = export_shared(
            config, args.format, Path(args.output) if args.output else None, args.images
        )
        if args.output:
            print(f"exported {rows} rows to {args.output}", file=sys.stderr)
        return 0
    if args.format in ("webdataset", "parquet"):
        from crawler.dataset.export import export_dataset

        if not args.output:
            raise ConfigError(f"--format {args.format} needs --output: a folder or s3://...")
        dataset = config.dataset
        if dataset.ignore_opt_out:
            print("export: --ignore-opt-out: opted-out images are kept", file=sys.stderr)
        export = export_dataset(
            out,
            args.format,
            args.output,
            dataset.shard_size,
            args.images,
            dataset.ignore_opt_out,
            dataset.near_duplicate_distance,
            command=" ".join(["crawler", *sys.argv[1:]]),  # (the card hides secrets)
        )
        print(f"{export.line()}; card {args.output.rstrip('/')}/README.md", file=sys.stderr)
        return 0
    from crawler.output.export import export_manifest

    output = Path(args.output) if args.output else None
    rows = export_manifest(out, args.format, output, args.images)
    if args.output:
        print(f"exported {rows} rows to {args.output}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from crawler.harvest.requeue import verify_crawl

    flags = {"out": str(args.out) if args.out else None, "state": args.state}
    output = load_config(args.config, os.environ, flags).output
    verification = verify_crawl(output.out_dir, output.state_dir, args.requeue_missing)
    print("\n".join(verification.lines()))
    return 0 if verification.all_matched else EXIT_MISMATCH


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.host and args.tls is None:
        raise ConfigError("--host goes with --tls DIR")
    if args.path is None and args.tls is None:
        raise ConfigError("give a key FILE to write, or --tls DIR (or both)")
    if args.path is not None:
        from crawler.wire.authkey import write_new_key

        write_new_key(args.path)
        print(f"wrote a new authkey to {args.path} (mode 0600); copy it to every node")
    if args.tls is not None:
        from crawler.wire.certs import write_tls_files

        files = write_tls_files(args.tls, args.host)
        ca, folder = files.path("ca.pem"), files.folder
        print(
            f"wrote a private CA and certificates to {folder}; the harvester's is valid for "
            f"{', '.join(files.harvester_names)}\n"
            f"  harvester: --tls-cert {folder / 'harvester.pem'} "
            f"--tls-key {folder / 'harvester-key.pem'} --tls-ca {ca}\n"
            f"  each node (copy ca.pem, node.pem, node-key.pem to it, keeping mode 0600): "
            f"--tls-cert {folder / 'node.pem'} --tls-key {folder / 'node-key.pem'} --tls-ca {ca}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.command == "harvest":
            return cmd_harvest(args)
        if args.command == "download":
            return cmd_download(args, argv)
        if args.command == "tail":
            return cmd_tail(args)
        if args.command == "urls":
            return cmd_urls(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "verify":
            return cmd_verify(args)
        return cmd_keygen(args)
    except CrawlerError as exc:
        print(f"crawler {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"crawler {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`crawler urls ... | head`): quiet, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
