"""Tests for crawler.output.progress: logfmt lines, the running summary, following and tailing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.errors import ConfigError
from crawler.output.progress import (
    STOPPED_NOTE,
    ProgressLog,
    Summary,
    follow,
    format_line,
    format_ts,
    format_value,
    parse_line,
    tail_log,
)

T0 = 1_700_000_000.0  # a whole second, so timestamps round-trip exactly
FAST = {"poll": 0.01, "idle_timeout": 0.3}


def line(event: str, at: float = T0, **fields: Any) -> str:
    return format_line(event, fields, at)


# -- logfmt --------------------------------------------------------------------------


def test_format_line_layout():
    text = format_line("stored", {"url": "http://example.org/a.png", "bytes": 1234}, T0 + 0.25)
    assert text == (
        "ts=2023-11-14T22:13:20.250Z event=stored url=http://example.org/a.png bytes=1234"
    )


def test_format_line_leaves_out_fields_without_a_value():
    text = format_line("page_fetched", {"url": "http://h/", "truncated": None, "n": 0}, T0)
    assert text == "ts=2023-11-14T22:13:20.000Z event=page_fetched url=http://h/ n=0"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "http://example.org/a b.png?x=1&y=2#frag",
        'say "hello"',
        "back\\slash",
        "backslash then n: \\n",
        "two\nlines",
        "carriage\rreturn\r\n",
        "trailing backslash \\",
        "key=value inside",
        "café ☕",
        "",
        "   ",
        "tab\there",
    ],
)
def test_round_trip_strings(value: str):
    record = parse_line(format_line("failed", {"error": value, "after": "x"}, T0))
    assert record["error"] == value
    assert record["after"] == "x"
    assert record["event"] == "failed"


def test_round_trip_is_one_line():
    text = format_line("failed", {"error": "a\nb\rc", "note": 'q"uote'}, T0)
    assert "\n" not in text
    assert "\r" not in text


def test_round_trip_through_the_file(tmp_path: Path):
    path = tmp_path / "progress.log"
    log = ProgressLog(path)
    log.event("failed", error="server said:\r\nno\rway", node="n1")
    log.event("stored", url="http://example.org/a.png")
    log.close()
    records = [parse_line(text) for text in follow(path, poll=0.01, idle_timeout=0.05)]
    assert [record["event"] for record in records] == ["failed", "stored"]
    assert records[0]["error"] == "server said:\r\nno\rway"
    assert records[0]["node"] == "n1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "3"),
        (2.0, "2"),
        (1.5, "1.5"),
        (0.125, "0.125"),
        (12.3456, "12.346"),
        (-0.5, "-0.5"),
        (True, "True"),
    ],
)
def test_round_trip_other_values(value: Any, expected: str):
    assert parse_line(format_line("totals", {"value": value}, T0))["value"] == expected


def test_format_value_quotes_only_when_needed():
    assert format_value("http://example.org/a.png") == "http://example.org/a.png"
    assert format_value("a b") == '"a b"'
    assert format_value("") == '""'


def test_event_name_with_a_space_round_trips():
    assert parse_line(format_line("odd event", {}, T0))["event"] == "odd event"


def test_parse_line_ignores_garbage():
    assert parse_line("") == {}
    assert parse_line("no pairs here") == {}


def test_progress_log_appends_flushed_lines(tmp_path: Path):
    path = tmp_path / "logs" / "progress.log"
    log = ProgressLog(path)
    try:
        log.event("stored", url="http://example.org/a.png", bytes=10)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1
        assert parse_line(lines[0])["url"] == "http://example.org/a.png"
    finally:
        log.close()


def test_a_batch_of_events_is_flushed_when_it_ends(tmp_path: Path):
    path = tmp_path / "progress.log"
    log = ProgressLog(path)
    try:
        with log.batch():
            log.event("stored", url="http://h/a.png")
            with log.batch():  # nested: only the outermost flushes
                log.event("stored", url="http://h/b.png")
            assert path.read_text(encoding="utf-8") == ""
        urls = [parse_line(text)["url"] for text in path.read_text(encoding="utf-8").splitlines()]
        assert urls == ["http://h/a.png", "http://h/b.png"]
        log.event("stored", url="http://h/c.png")  # outside a batch: flushed at once
        assert path.read_text(encoding="utf-8").count("\n") == 3
    finally:
        log.close()


@pytest.mark.parametrize("fraction", [0.0, 0.0015, 0.25, 0.999])
def test_timestamps_match_strftime_to_the_millisecond(fraction: float):
    """format_ts caches the part up to the second: same text as formatting in full."""
    for second in (T0, T0 + 1, T0 + 86399):
        ts = second + fraction
        full = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert format_ts(ts) == full


# -- Summary -------------------------------------------------------------------------


def summary_of(lines: list[str]) -> Summary:
    summary = Summary()
    for text in lines:
        summary.update(parse_line(text))
    return summary


CRAWL = [
    line("crawl_started", T0, seeds="http://example.org/"),
    line("node_joined", T0, node="n1"),
    line("node_joined", T0, node="n2"),
    line("page_fetched", T0 + 1, url="http://example.org/"),
    line("page_fetched", T0 + 1, url="http://example.org/2"),
    line("queued", T0 + 1, url="http://example.org/a.png"),
    line("queued", T0 + 1, url="http://example.org/b.png"),
    line("queued", T0 + 1, url="http://example.org/c.png"),
    line("stored", T0 + 2, url="http://example.org/a.png", bytes=1_000_000, node="n1"),
    line("stored", T0 + 3, url="http://example.org/b.png", bytes=1_500_000, node="n2"),
    line("failed", T0 + 4, url="http://example.org/c.png", error="http_404", node="n2"),
    line("node_lost", T0 + 5, node="n2"),
    line("totals", T0 + 5, stored=2),
]


def test_summary_counts_events():
    summary = summary_of(CRAWL)
    assert (summary.pages, summary.queued, summary.stored, summary.failed) == (2, 3, 2, 1)
    assert summary.bytes == 2_500_000
    assert summary.finished is False
    assert (summary.nodes["n1"].stored, summary.nodes["n1"].failed) == (1, 0)
    assert (summary.nodes["n2"].stored, summary.nodes["n2"].failed) == (1, 1)
    assert summary.nodes["n1"].state == "joined"
    assert summary.nodes["n2"].state == "lost"
    assert (summary.first_ts, summary.last_ts) == (T0, T0 + 5)


def test_summary_finishes_on_crawl_finished():
    summary = summary_of([*CRAWL, line("crawl_finished", T0 + 6)])
    assert summary.finished is True


def test_summary_shows_the_latest_per_host_state_while_the_crawl_runs():
    hosts = [
        line("hosts", T0, busy="a.test=8/8", throttled="b.test=paused:1.5s;delay:0.5s;429/503:1"),
        line("hosts", T0 + 2, busy="a.test=3/8,c.test:8080=1/2"),
    ]
    summary = summary_of([*CRAWL, *hosts])
    text = summary.render()
    assert "in flight per host: a.test=3/8, c.test:8080=1/2" in text
    assert "throttled" not in text, "the latest hosts event has no throttled host"
    summary = summary_of([*CRAWL, *hosts[:1]])
    assert "throttled: b.test=paused:1.5s;delay:0.5s;429/503:1" in summary.render()
    summary.update(parse_line(line("crawl_finished", T0 + 3)))
    assert "in flight per host" not in summary.render()


def test_summary_node_left():
    summary = summary_of([line("node_joined", node="n1"), line("node_left", node="n1")])
    assert summary.nodes["n1"].state == "left"


def test_summary_ignores_unknown_events_and_missing_fields():
    summary = summary_of([line("something_new", answer=42), "not logfmt at all", ""])
    assert (summary.pages, summary.stored, summary.failed, summary.bytes) == (0, 0, 0, 0)
    assert summary.nodes == {}


def test_images_per_second():
    lines = [line("crawl_started", T0)]
    lines += [line("stored", T0 + second, bytes=1) for second in range(1, 11)]
    summary = summary_of(lines)
    assert summary.images_per_second() == pytest.approx(1.0)
    # last 4 seconds: stored at T0+6 .. T0+10
    assert summary.images_per_second(window=4) == pytest.approx(5 / 4)


def test_images_per_second_without_stored_images_or_time():
    assert Summary().images_per_second() == 0.0
    assert summary_of([line("page_fetched", T0)]).images_per_second() == 0.0
    assert summary_of([line("stored", T0, bytes=1)]).images_per_second() == 0.0


def test_render_mentions_the_figures():
    text = summary_of([*CRAWL, line("crawl_finished", T0 + 5)]).render()
    first = text.splitlines()[0]
    for expected in ("pages 2", "queued 3", "stored 2", "failed 1", "2.5 MB", "[finished]"):
        assert expected in first
    assert "images/s" in first
    assert "node n1: joined, stored 1, failed 0" in text
    assert "node n2: lost, stored 1, failed 1" in text


def test_render_of_an_unfinished_crawl():
    assert "[finished]" not in summary_of(CRAWL).render()


# -- follow --------------------------------------------------------------------------


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def test_follow_reads_a_file_that_grows(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("one\n", encoding="utf-8")

    def writer() -> None:
        for text in ("two\n", "thr", "ee\n", "four\n"):
            time.sleep(0.03)
            append(path, text)

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(follow(path, poll=0.01, idle_timeout=0.5))
    thread.join()
    assert lines == ["one", "two", "three", "four"]


def test_follow_keeps_an_unfinished_last_line_back(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("complete\npartial", encoding="utf-8")
    assert list(follow(path, poll=0.01, idle_timeout=0.1)) == ["complete"]


def test_follow_waits_for_the_file_to_appear(tmp_path: Path):
    path = tmp_path / "later" / "progress.log"

    def writer() -> None:
        time.sleep(0.05)
        path.parent.mkdir()
        path.write_text("hello\nworld\n", encoding="utf-8")

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(follow(path, **FAST))
    thread.join()
    assert lines == ["hello", "world"]


def test_follow_gives_up_when_idle(tmp_path: Path):
    started = time.monotonic()
    assert list(follow(tmp_path / "never.log", poll=0.01, idle_timeout=0.1)) == []
    assert time.monotonic() - started < 1.0


def test_follow_ends_at_the_end_of_the_file_once_until_says_so(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("one\ntwo\nthree\n", encoding="utf-8")
    asked_after: list[int] = []
    lines: list[str] = []

    def until() -> bool:
        asked_after.append(len(lines))
        return True

    started = time.monotonic()
    for text in follow(path, poll=0.01, idle_timeout=2.0, until=until):  # a safety net
        lines.append(text)
    assert lines == ["one", "two", "three"]
    assert asked_after == [3], "asked only at the end of the file, with every line read"
    assert time.monotonic() - started < 1.0


def test_follow_waits_for_more_while_until_says_no(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("one\n", encoding="utf-8")
    lines = list(follow(path, poll=0.01, idle_timeout=0.2, until=lambda: False))
    assert lines == ["one"]


def test_follow_starts_over_after_rotation(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("old 1\nold 2\n", encoding="utf-8")
    lines = follow(path, **FAST)
    assert [next(lines), next(lines)] == ["old 1", "old 2"]
    append(path, "old 3\n")  # written just before the rotation: must not be lost
    path.rename(tmp_path / "progress.log.1")
    path.write_text("new 1\nnew 2\n", encoding="utf-8")
    assert list(lines) == ["old 3", "new 1", "new 2"]


def test_follow_starts_over_after_truncation(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("a long first line\nanother long line\n", encoding="utf-8")
    lines = follow(path, **FAST)
    assert [next(lines), next(lines)] == ["a long first line", "another long line"]
    path.write_text("short\n", encoding="utf-8")
    assert list(lines) == ["short"]


# -- tail_log ------------------------------------------------------------------------


def run_tail(path: Path, results: list[int]) -> threading.Thread:
    """Run tail_log in a daemon thread, so that a test that fails cannot hang the run."""
    thread = threading.Thread(
        target=lambda: results.append(tail_log(path, summary_every=60.0)), daemon=True
    )
    thread.start()
    return thread


def read_until(capsys, text: str, timeout: float = 5.0) -> str:
    """What a background thread printed, once it has printed ``text``."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
        seen += capsys.readouterr().out
    return seen


def test_tail_log_stops_after_crawl_finished(tmp_path: Path, capsys):
    path = tmp_path / "progress.log"
    path.write_text("\n".join([*CRAWL, line("crawl_finished", T0 + 6)]) + "\n", encoding="utf-8")
    results: list[int] = []
    thread = run_tail(path, results)
    thread.join(timeout=5)
    assert results == [0]
    out = capsys.readouterr().out
    assert "event=node_lost node=n2" in out
    assert "event=crawl_finished" in out
    summary = out.splitlines()[-3:]
    assert "stored 2" in summary[0]
    assert "[finished]" in summary[0]
    assert "node n2: lost" in summary[2]


def test_tail_log_waits_for_the_log_and_its_end(tmp_path: Path, capsys):
    path = tmp_path / "progress.log"
    results: list[int] = []
    thread = run_tail(path, results)
    out = read_until(capsys, "to appear...")
    assert out == f"waiting for {path} to appear...\n"
    path.write_text(CRAWL[0] + "\n", encoding="utf-8")
    assert "event=crawl_started" in read_until(capsys, "event=crawl_started")
    time.sleep(0.3)
    assert thread.is_alive(), "tail_log must keep following until crawl_finished"
    append(path, line("stored", T0 + 1, bytes=7, node="n1") + "\n")
    append(path, line("crawl_finished", T0 + 2) + "\n")
    thread.join(timeout=5)
    assert results == [0]
    out = capsys.readouterr().out
    assert "stored 1" in out
    assert "[finished]" in out


def test_tail_log_of_a_crawl_stopped_before_it_began_ends_at_once(tmp_path: Path, capsys):
    path = tmp_path / "progress.log"
    path.write_text("\n".join([*CRAWL, line("crawl_stopped", T0 + 6)]) + "\n", encoding="utf-8")
    results: list[int] = []
    run_tail(path, results).join(timeout=5)
    assert results == [0]
    out = capsys.readouterr().out.splitlines()
    assert "event=crawl_stopped" in out[-5]
    assert "stored 2" in out[-4] and "[finished]" not in out[-4]
    assert out[-1] == STOPPED_NOTE == "crawl stopped; run the same harvest command again to resume"


def test_tail_log_reads_past_an_earlier_stop_and_follows_until_the_next(tmp_path: Path, capsys):
    path = tmp_path / "progress.log"
    resumed = [line("crawl_stopped", T0 + 6), line("crawl_resumed", T0 + 7, seeds="s")]
    path.write_text("\n".join([*CRAWL, *resumed]) + "\n", encoding="utf-8")
    results: list[int] = []
    thread = run_tail(path, results)
    assert "event=crawl_resumed" in read_until(capsys, "event=crawl_resumed")
    time.sleep(0.5)
    assert thread.is_alive(), "a resumed crawl is followed, whatever stops came before"
    append(path, line("stored", T0 + 8, bytes=7, node="n1") + "\n")
    append(path, line("crawl_stopped", T0 + 9) + "\n")
    thread.join(timeout=5)
    assert results == [0]
    out = capsys.readouterr().out.splitlines()
    assert "stored 3" in out[-4]
    assert out[-1] == STOPPED_NOTE


def tail_error(path: Path) -> BaseException:
    """What tail_log raised for ``path``, run in a daemon thread that must end soon."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            tail_log(path)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), f"tail_log({path}) still waits"
    (error,) = raised
    return error


def test_tail_log_refuses_a_folder_that_does_not_exist_or_a_folder(tmp_path: Path):
    missing = tail_error(tmp_path / "nowhere" / "progress.log")
    assert isinstance(missing, ConfigError)
    assert "the folder" in str(missing) and "nowhere does not exist" in str(missing)
    folder = tail_error(tmp_path)
    assert isinstance(folder, ConfigError) and "is a folder" in str(folder)


def crawler_tail(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "tail", "--plain", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(tail: subprocess.Popen, timeout: float = 30.0) -> tuple[str, str]:
    try:
        return tail.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tail.kill()
        tail.communicate(timeout=10)
        raise AssertionError(f"crawler tail still running after {timeout} s") from None


def test_crawler_tail_of_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path):
    tail = crawler_tail(tmp_path / "nowhere" / "progress.log")
    out, err = finish(tail)
    assert tail.returncode == 2
    assert err.strip() == (
        f"crawler tail: error: cannot follow {tmp_path}/nowhere/progress.log: the folder "
        f"{tmp_path}/nowhere does not exist (check the path, or start the harvester first)"
    )
    assert out == ""


def test_crawler_tail_of_a_stopped_crawl_ends_with_how_to_resume(tmp_path: Path):
    path = tmp_path / "progress.log"
    path.write_text("\n".join([*CRAWL, line("crawl_stopped", T0 + 6)]) + "\n", encoding="utf-8")
    tail = crawler_tail(path)
    out, err = finish(tail)
    assert tail.returncode == 0, err
    assert out.splitlines()[-1] == STOPPED_NOTE
    assert "stored 2" in out


def test_crawler_tail_waits_for_a_log_to_appear_then_ends_when_it_stops(tmp_path: Path):
    path = tmp_path / "progress.log"
    tail = crawler_tail(path)
    try:
        time.sleep(1.5)
        waited = tail.poll() is None
        path.write_text("\n".join([CRAWL[0], line("crawl_stopped", T0 + 1)]) + "\n")
        out, err = finish(tail)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait(timeout=10)
    assert waited, "a missing log in an existing folder is waited for"
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"waiting for {path} to appear..."
    assert lines[-1] == STOPPED_NOTE


def test_rates_over_a_minute_are_not_capped_by_a_count():
    # 200 images/s for 50 s: 10,000 stored events, more than any fixed-size buffer
    # of a few thousand would hold.
    lines = [line("stored", T0 + n / 200, url=f"u{n}", bytes=10, node="n1") for n in range(10_000)]
    summary = summary_of(lines)
    assert round(summary.images_per_second(60.0)) == 200
    assert round(summary.images_per_second(60.0, summary.nodes["n1"].recent)) == 200
    assert round(summary.bytes_per_second(60.0)) == 2000
    summary.update(parse_line(line("stored", T0 + 200, url="late", node="n1")))
    assert len(summary.recent) == 1, "what is older than the horizon is dropped"
