"""Manifest and line files: one JSON line per record, whole lines or nothing."""

from __future__ import annotations

import json
from pathlib import Path

from crawler.output.manifest import MANIFEST_NAME, Manifest, read_manifest
from tests.test_storage import run_limited


def test_manifest_writes_one_json_line_per_record(tmp_path: Path):
    manifest = Manifest(tmp_path / "out")
    records = [
        {"url": "http://example.org/a.png", "outcome": "stored", "bytes": 12},
        {"url": "http://example.org/café.png", "outcome": "failed", "error": "http_404"},
    ]
    for record in records:
        manifest.write(record)
    manifest.close()
    lines = (tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    assert "café" in lines[1]


def test_manifest_is_readable_before_close(tmp_path: Path):
    manifest = Manifest(tmp_path)
    try:
        manifest.write({"url": "http://example.org/a.png"})
        assert read_manifest(manifest.path) == [{"url": "http://example.org/a.png"}]
        manifest.write({"url": "http://example.org/b.png"})
        assert len(read_manifest(manifest.path)) == 2
    finally:
        manifest.close()


def test_manifest_record_with_newline_stays_on_one_line(tmp_path: Path):
    manifest = Manifest(tmp_path)
    manifest.write({"error": "line one\nline two"})
    manifest.close()
    assert len(manifest.path.read_text(encoding="utf-8").splitlines()) == 1
    assert read_manifest(manifest.path) == [{"error": "line one\nline two"}]


def test_read_manifest_skips_a_torn_last_line(tmp_path: Path):
    path = tmp_path / MANIFEST_NAME
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": 3, "url": "http://exa', encoding="utf-8")
    assert read_manifest(path) == [{"n": 1}, {"n": 2}]


def test_read_manifest_of_an_empty_file(tmp_path: Path):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(b"")
    assert read_manifest(path) == []


def test_a_torn_last_manifest_line_is_cut_when_the_manifest_reopens(tmp_path: Path):
    out = tmp_path / "out"
    manifest = Manifest(out)
    manifest.write({"url": "http://h/a.png"})
    manifest.close()
    with (out / MANIFEST_NAME).open("a") as handle:
        handle.write('{"url": "http://h/b.p')  # a crash in the middle of a write

    reopened = Manifest(out)
    assert reopened.repaired
    reopened.write({"url": "http://h/c.png"})
    reopened.close()
    assert [r["url"] for r in read_manifest(out / MANIFEST_NAME)] == [
        "http://h/a.png",
        "http://h/c.png",
    ]
    assert reopened.recent_urls() == {"http://h/a.png", "http://h/c.png"}
    assert not Manifest(out).repaired


def test_a_line_file_never_keeps_half_a_batch_on_a_full_disk(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"url": "first"}\n')
    child = run_limited(
        tmp_path,
        path.stat().st_size + 100,
        """
        from crawler.output.manifest import LineFile
        lines = LineFile(folder / "manifest.jsonl")
        try:
            with lines.batch():
                for number in range(50):
                    lines.write_line('{"url": "u%03d"}' % number)
        except OSError:
            print("raised")
        lines.write_line('{"url": "small"}')
        lines.close()
        """,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["raised"]
    # The batch that did not fit is gone whole; the next line that fits is there.
    assert path.read_text().splitlines() == ['{"url": "first"}', '{"url": "small"}']
