"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from crawler import cli, errors
from crawler.cli import build_parser
from crawler.demo.server import serve
from crawler.demo.site import generate_site
from tests.e2e.cluster import crawler_env, free_port


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """A site with images: with no downloader connected, a harvester stays up."""
    root = tmp_path_factory.mktemp("site")
    generate_site(root, pages=2, images=4)
    server = serve(root)
    yield server.url
    server.close()


def crawler(
    *args: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        env=env or crawler_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_importing_the_cli_opens_no_socket_module_before_gevent_patches():
    # `crawler download` must monkey-patch before socket or ssl is imported anywhere.
    code = (
        "import sys, crawler.cli; "
        "print(sorted(m for m in ('socket', 'ssl', 'requests', 'urllib3') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_downloader_waits_for_the_harvester_then_gives_up_cleanly(tmp_path):
    env = {**crawler_env(), "CRAWLER_WAIT_FOR_HARVESTER": "1.5"}
    started = time.monotonic()
    done = crawler(
        "download",
        "--connect",
        f"127.0.0.1:{free_port()}",
        "--processes",
        "1",
        "--out",
        str(tmp_path),
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "not reachable" in done.stderr and "gave up after 1.5 s" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def start_harvester(site_url: str, out: Path, port: int, env: dict) -> subprocess.Popen:
    """A harvester with work queued and no downloader: it stays up until killed."""
    harvester = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawler",
            "harvest",
            site_url,
            "--listen",
            f"127.0.0.1:{port}",
            "--out",
            str(out),
            "--allow-private",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return harvester
        time.sleep(0.05)
    harvester.kill()
    raise AssertionError("the harvester did not start listening")


def test_downloader_with_the_wrong_key_is_refused(tmp_path, site_url):
    port = free_port()
    harvester = start_harvester(site_url, tmp_path / "h", port, crawler_env())
    try:
        done = crawler(
            "download",
            "--connect",
            f"127.0.0.1:{port}",
            "--processes",
            "1",
            "--out",
            str(tmp_path / "d"),
            # Another random key; give up rather than wait should the harvester vanish.
            env={**crawler_env(), "CRAWLER_WAIT_FOR_HARVESTER": "20"},
        )
        assert harvester.poll() is None, "the harvester should still be waiting for nodes"
        assert done.returncode == 2, done.stderr
        assert "rejected our authkey" in done.stderr and "Traceback" not in done.stderr
    finally:
        harvester.kill()
        harvester.wait(timeout=10)


def test_second_harvester_on_the_same_state_is_refused(tmp_path, site_url):
    env = crawler_env()
    out = tmp_path / "out"
    first = start_harvester(site_url, out, free_port(), env)
    try:
        done = crawler(
            "harvest",
            "http://127.0.0.1:9/",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--out",
            str(out),
            env=env,
        )
        assert first.poll() is None, "the first harvester should still be waiting for nodes"
        assert done.returncode == 2
        assert "another harvester is using the state folder" in done.stderr
    finally:
        first.kill()
        first.wait(timeout=10)


def test_busy_listen_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = crawler(
            "harvest",
            "http://127.0.0.1:9/",
            "--listen",
            f"127.0.0.1:{port}",
            "--out",
            str(tmp_path),
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_keygen_writes_a_private_key_once(tmp_path):
    key = tmp_path / "crawler.key"
    done = crawler("keygen", str(key))
    assert done.returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 16
    assert key.read_text().strip() not in done.stdout + done.stderr
    again = crawler("keygen", str(key))
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_harvester_refuses_an_output_folder_with_an_earlier_manifest(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"url": "http://x/a.png"}\n')
    done = crawler(
        "harvest",
        "http://127.0.0.1:9/",
        "--out",
        str(tmp_path),
        "--listen",
        f"127.0.0.1:{free_port()}",
    )
    assert done.returncode == 4 and "holds an earlier crawl whose state is not in" in done.stderr
    assert (tmp_path / "manifest.jsonl").read_text() == '{"url": "http://x/a.png"}\n'


def test_tail_of_a_finished_log_prints_summary_and_returns(tmp_path):
    log = tmp_path / "progress.log"
    log.write_text(
        "ts=2026-01-01T00:00:00.000Z event=page_fetched url=http://h/ status=200\n"
        "ts=2026-01-01T00:00:01.000Z event=stored url=http://h/a.png bytes=10 node=n1\n"
        "ts=2026-01-01T00:00:02.000Z event=failed url=http://h/b.png status=404 node=n1\n"
        "ts=2026-01-01T00:00:03.000Z event=crawl_finished\n"
    )
    done = crawler("tail", str(log), "--only", "stored", timeout=30)
    assert done.returncode == 0
    assert "event=stored" in done.stdout and "event=failed" not in done.stdout
    assert "pages 1" in done.stdout and "stored 1" in done.stdout and "failed 1" in done.stdout
    assert "node n1" in done.stdout and "[finished]" in done.stdout


def test_python_dash_m_and_help(tmp_path: Path):
    done = crawler("--help")
    assert done.returncode == 0
    for command in ("harvest", "download", "tail", "keygen"):
        assert command in done.stdout


def test_user_mistakes_get_one_line_and_exit_code_2(tmp_path):
    env = crawler_env()
    loose_key = tmp_path / "key"
    loose_key.write_text("a" * 32)
    loose_key.chmod(0o644)
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[crawl]\nmax_depht = 3\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = [
        (["harvest", "http://127.0.0.1:9/", "--config", str(tmp_path)], env, "cannot read"),
        (
            [
                "harvest",
                "http://127.0.0.1:9/",
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--out",
                str(a_file / "out"),
            ],
            env,
            "cannot write to",
        ),
        (
            ["download", "--out", str(a_file / "out"), "--processes", "1"],
            env,
            "cannot store images in the output folder",
        ),
        (["harvest", "ftp://example.org/"], env, "seed is not an http(s) URL"),
        (["harvest", "http://127.0.0.1:9/", "--config", str(bad_config)], env, "crawl.max_depht"),
        (["harvest", "http://127.0.0.1:9/", "--max-depth", "-1"], env, "--max-depth"),
        (["harvest", "http://127.0.0.1:9/", "--listen", "nowhere"], env, "listen"),
        (["harvest", "http://127.0.0.1:9/", "--exclude", "(oops"], env, "regular expression"),
        (["harvest", "http://127.0.0.1:9/", "--prefix", "example.org/"], env, "http:// or https"),
        (["harvest", "http://127.0.0.1:9/", "--max-images", "-2"], env, "--max-images"),
        (["download", "--authkey-file", str(loose_key)], env, "chmod 600"),
        (["download"], {k: v for k, v in env.items() if k != "CRAWLER_AUTHKEY"}, "CRAWLER_AUTHKEY"),
        (
            ["harvest", "http://127.0.0.1:9/"],
            {**env, "CRAWLER_MAX_PAGES": "many"},
            "CRAWLER_MAX_PAGES",
        ),
        (
            ["harvest", "http://127.0.0.1:9/", "--render", "auto"],
            {**env, "CRAWLER_CHROMIUM": str(a_file)},
            "is not an executable file",
        ),
        (
            ["harvest", "http://127.0.0.1:9/", "--render", "always"],
            {**env, "PATH": str(tmp_path)},
            "apt-get install chromium",
        ),
    ]
    for args, case_env, expected in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
        done = subprocess.run(
            [sys.executable, "-m", "crawler", *args, *out],
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
    assert a_file.read_text() == "not a folder"
    assert not (tmp_path / "o").exists(), "a refused command must not write anything"


def test_a_seed_on_a_private_address_is_refused_by_default(tmp_path, site_url):
    done = crawler(
        "harvest", site_url, "--out", str(tmp_path), "--listen", f"127.0.0.1:{free_port()}"
    )
    assert done.returncode == 3, done.stderr  # every seed failed
    assert "crawl ended without fetching a page (every seed failed)" in done.stdout
    assert f"seed {site_url} failed: blocked_address" in done.stderr
    assert "--allow-private" in done.stderr
    assert "0 pages (1 failed), 0 images found" in done.stdout


def test_urls_lists_every_image_the_pages_reference(tmp_path):
    truth = generate_site(tmp_path / "site", pages=5, images=30, seed=9)
    server = serve(tmp_path / "site")
    try:
        found: dict[str, str] = {}
        for page in truth["pages"]:
            done = crawler("urls", server.url.rstrip("/") + page, "--kinds", "--allow-private")
            assert done.returncode == 0, done.stderr
            for line in done.stdout.splitlines():
                kind, url = line.split("\t")
                found.setdefault(url, kind)
        base = server.url.rstrip("/")
        expected = {base + image["path"] for image in truth["images"]}
        assert set(found) == expected | {base + path for path in truth["broken_images"]}
        assert set(found.values()) == {"img_src", "srcset", "picture", "lazy", "link"}

        refused = crawler("urls", server.url + "index.html")
        assert refused.returncode == 1 and "blocked_address" in refused.stderr
        missing = crawler("urls", server.url + "missing.html", "--allow-private")
        assert missing.returncode == 1 and "http_404" in missing.stderr
    finally:
        server.close()


def test_report_and_export_commands(tmp_path):
    from tests.output.test_report import build_out

    out = build_out(tmp_path / "out")
    report = crawler("report", str(out))
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith(f"report: {out / 'report.html'}")
    assert (out / "report.html").stat().st_size > 1000

    csv_out = crawler("export", str(out), "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    manifest = [
        line for line in (out / "manifest.jsonl").read_text().splitlines() if line.endswith("}")
    ]
    assert len(rows) == len(manifest) and rows[0]["url"]
    target = tmp_path / "export.jsonl"
    jsonl = crawler("export", str(out), "--format", "jsonl", "--output", str(target))
    assert jsonl.returncode == 0 and f"to {target}" in jsonl.stderr
    assert len(target.read_text().splitlines()) == len(rows)

    for args in (["report", str(tmp_path / "empty")], ["export", str(tmp_path / "empty")]):
        done = crawler(*args)
        assert done.returncode == 2 and "no manifest.jsonl" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "empty").exists()


def test_version_is_the_package_version():
    with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    done = crawler("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"crawler {version}\n"


def test_building_the_parser_imports_no_socket_module():
    # --version reads importlib.metadata, which imports socket: only when it is asked for.
    code = (
        "import sys, crawler.cli; crawler.cli.build_parser(); "
        "print(sorted(m for m in ('socket', 'ssl') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


COMMANDS = ("harvest", "download", "tail", "urls", "report", "export", "status", "keygen")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_ends_with_examples_that_parse(command: str | None):
    done = crawler(*([command] if command else []), "--help")
    assert done.returncode == 0, done.stderr
    _, marker, examples = done.stdout.partition("\nexamples:\n")
    assert marker, done.stdout
    lines = examples.rstrip("\n").splitlines()
    # Raw formatting: one example per line, indented, none wrapped or joined.
    assert lines and all(line.startswith("  ") for line in lines), examples
    invocations = [line.split("|")[0].split(">")[0] for line in lines]
    invocations = [shlex.split(line) for line in invocations if line.strip().startswith("crawler")]
    assert invocations, examples
    for words in invocations:
        if command:
            assert words[1] == command, words
        args = build_parser().parse_args(words[1:])  # argparse exits on a bad flag
        assert args.command == words[1]


@pytest.mark.parametrize(
    "args",
    [
        ["download", "--bogus"],
        ["harvest", "http://127.0.0.1:9/", "--bogus"],
        ["tail", "--bogus", "x"],
        ["urls", "http://127.0.0.1:9/", "--bogus"],
        ["report", "--bogus"],
        ["export", "--bogus"],
        ["status", "--bogus"],
        ["keygen", "key", "--bogus"],
    ],
)
def test_unknown_flag_shows_the_commands_own_usage(tmp_path: Path, args: list[str]):
    done = subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        env=crawler_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    command = args[0]
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"usage: crawler {command} "), done.stderr
    assert f"crawler {command}: error: unrecognized arguments: --bogus" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir()), "a refused command must not write anything"


def test_keygen_where_it_cannot_write_is_one_line_and_exit_code_2(tmp_path: Path):
    from tests.wire.test_authkey import unwritable_key_paths

    for case, path in unwritable_key_paths(tmp_path).items():
        done = crawler("keygen", str(path))
        assert done.returncode == 2, (case, done.stderr)
        assert done.stderr.startswith(f"crawler keygen: error: cannot write a key to {path}: ")
        assert len(done.stderr.strip().splitlines()) == 1, (case, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert not path.exists(), case


def test_a_user_agent_that_would_inject_a_header_is_refused(tmp_path: Path):
    env = {**crawler_env(), "CRAWLER_USER_AGENT": "bot/1.0\r\nX-Injected: 1"}
    for args in (
        ["harvest", "http://127.0.0.1:9/", "--out", str(tmp_path / "o")],
        ["urls", "http://127.0.0.1:9/"],
    ):
        done = crawler(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"crawler {args[0]}: error: CRAWLER_USER_AGENT ")
        assert "User-Agent header" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "o").exists()


def test_report_of_a_multi_machine_crawl_names_the_nodes_holding_the_files(tmp_path: Path):
    from tests.output.test_report import build_multi_machine

    out, _ = build_multi_machine(tmp_path)
    done = crawler("report", str(out))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert f"3 files are not in {out}: 2 on node far-a, 1 on node far-b<script>" in done.stdout
    assert f"rsync -a --exclude .tmp NODEHOST:DIR/ {out}/" in done.stdout
    assert "Files on other nodes" in (out / "report.html").read_text()


def test_retry_failed_and_verify_mistakes_are_one_line_and_exit_code_2(tmp_path: Path):
    out = tmp_path / "o"
    seed = "http://127.0.0.1:9/"
    cases = [
        (["harvest", seed, "--out", str(out), "--only", "http_503"], "--only goes with"),
        (["harvest", seed, "--out", str(out), "--retry-failed"], "no crawl state in"),
        (["verify", str(out)], "no manifest in"),
    ]
    for args, expected in cases:
        done = crawler(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists(), "a refused command must not write anything"


def test_verify_help_ends_with_examples_that_parse():
    test_every_help_ends_with_examples_that_parse("verify")


def test_unknown_flag_of_verify_shows_its_own_usage(tmp_path: Path):
    test_unknown_flag_shows_the_commands_own_usage(tmp_path, ["verify", "--bogus"])


def test_verify_of_a_crawl_whose_files_all_match_exits_0(tmp_path: Path):
    body = b"an image"
    sha256 = hashlib.sha256(body).hexdigest()
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "x.png").write_bytes(body)
    record = {"url": "http://x/a.png", "outcome": "stored", "path": "ab/x.png"}
    record.update(bytes=len(body), sha256=sha256, node="n")
    (tmp_path / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    done = crawler("verify", str(tmp_path))
    assert (done.returncode, done.stderr) == (0, "")
    assert (
        done.stdout == f"checked 1 stored images in {tmp_path}: 1 ok, 0 wrong content, 0 missing\n"
    )
    (tmp_path / "ab" / "x.png").write_bytes(body[:-1])
    done = crawler("verify", str(tmp_path))
    assert done.returncode == 1 and "1 wrong content" in done.stdout, done.stdout
    assert "nothing was re-queued (give --state)" in done.stdout
    assert not (tmp_path / "ab" / "x.png").exists()


# Every CrawlerError class and the exit code a user (or a script) meets; 2 and 4 are
# also asserted by the end-to-end tests (tests/e2e), for real processes.
EXIT_CODES = {
    errors.ConfigError: 2,
    errors.AuthKeyError: 2,
    errors.TlsError: 2,
    errors.BrokerUnavailable: 2,
    errors.NotAHarvester: 2,
    errors.StateError: 2,
    errors.OtherCrawl: 4,
}


def _subclasses(root: type) -> set[type]:
    found = set(root.__subclasses__())
    return found.union(*(_subclasses(cls) for cls in found))


def test_every_error_class_has_its_exit_code():
    assert _subclasses(errors.CrawlerError) == set(EXIT_CODES), "a class without a code here"
    assert not _subclasses(errors.CrawlerError) & _subclasses(errors.OutcomeError)


@pytest.mark.parametrize("error", list(EXIT_CODES), ids=lambda cls: cls.__name__)
def test_each_error_class_exits_with_its_code_and_one_line(error, monkeypatch, capsys):
    def refuse(args):
        raise error("what went wrong, and what to do")

    monkeypatch.setattr(cli, "cmd_keygen", refuse)
    assert cli.main(["keygen", "unused"]) == EXIT_CODES[error]
    captured = capsys.readouterr()
    assert captured.err == "crawler keygen: error: what went wrong, and what to do\n"
    assert captured.out == ""


def test_one_urls_outcome_is_no_user_error(monkeypatch):
    """An outcome that escaped the code fetching the URL is a bug: it keeps its traceback."""

    def escape(args):
        raise errors.BlockedAddress("127.0.0.1 is a private address")

    monkeypatch.setattr(cli, "cmd_keygen", escape)
    assert not issubclass(errors.UnsafeTarget, errors.CrawlerError)
    with pytest.raises(errors.BlockedAddress):
        cli.main(["keygen", "unused"])
