"""Tests for crawler.output.export: CSV and JSON Lines rows read back to the manifest's values."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from crawler.errors import ConfigError, StateError
from crawler.output.export import COLUMNS, export_manifest, export_row, stored_file
from tests.output.test_report import COMMA_URL, HOST, HOSTILE_URL, build_out


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return build_out(tmp_path / "out")


def manifest_lines(out: Path) -> list[dict]:
    """The complete records, as the test wrote them (the torn last line left out)."""
    lines = (out / "manifest.jsonl").read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines]


def export_text(out: Path, fmt: str) -> tuple[int, str]:
    buffer = io.StringIO(newline="")
    count = export_manifest(out, fmt, buffer)
    return count, buffer.getvalue()


def by_url(rows: list[dict]) -> dict[str, dict]:
    return {row["url"]: row for row in rows}


def test_csv_reads_back_to_the_manifest_values(out: Path):
    count, text = export_text(out, "csv")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames) == COLUMNS
    rows = list(reader)
    records = manifest_lines(out)
    assert count == len(rows) == len(records)
    for record, row in zip(records, rows, strict=True):
        for column in COLUMNS:
            if column in ("file", "width", "height"):
                continue
            value = record.get(column)
            assert row[column] == ("" if value is None else str(value)), column
    urls = {row["url"] for row in rows}
    assert HOSTILE_URL in urls and COMMA_URL in urls  # quotes, commas, newline intact


def test_jsonl_reads_back_to_the_manifest_values(out: Path):
    count, text = export_text(out, "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert count == len(rows) == len(manifest_lines(out))
    assert all(tuple(row) == COLUMNS for row in rows)
    for record, row in zip(manifest_lines(out), rows, strict=True):
        for column in set(COLUMNS) - {"file", "width", "height"}:
            assert row[column] == record.get(column), column


def test_dimensions_are_filled_from_the_stored_file(out: Path):
    rows = by_url(json.loads(line) for line in export_text(out, "jsonl")[1].splitlines())
    green = rows[HOST + "/img/green.png"]
    assert (green["width"], green["height"]) == (120, 80)
    assert rows[HOST + "/img/red.jpg"]["width"] == 300  # from the manifest
    # Neither an SVG nor a corrupt file has dimensions Pillow can read.
    assert rows[HOST + "/img/logo.svg"]["width"] is None
    assert rows[HOST + "/img/broken.png"]["width"] is None


def test_file_is_the_absolute_path_of_a_stored_file(out: Path):
    rows = by_url(json.loads(line) for line in export_text(out, "jsonl")[1].splitlines())
    stored = rows[HOST + "/img/red.jpg"]["file"]
    assert Path(stored).is_absolute() and Path(stored).is_file()
    assert Path(stored) == (out / rows[HOST + "/img/red.jpg"]["path"]).absolute()
    assert rows[HOST + "/img/missing-0.png"]["file"] is None


def test_export_to_a_file_and_to_stdout(out: Path, tmp_path: Path, capsys):
    target = tmp_path / "rows.csv"
    count = export_manifest(out, "csv", target)
    assert len(list(csv.DictReader(target.open(newline="")))) == count
    assert export_manifest(out, "jsonl", None) == count
    assert len(capsys.readouterr().out.splitlines()) == count


def test_unknown_format_is_a_config_error(out: Path):
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        export_manifest(out, "xml", io.StringIO())


def test_unwritable_output_is_a_config_error(out: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot write"):
        export_manifest(out, "csv", tmp_path / "no" / "such" / "dir.csv")


def test_missing_manifest_is_a_state_error(tmp_path: Path):
    with pytest.raises(StateError, match="nothing to export"):
        export_manifest(tmp_path, "csv", io.StringIO())


def test_stored_file_stays_inside_out(out: Path, tmp_path: Path):
    (tmp_path / "secret.txt").write_text("x")
    assert stored_file(out, "../secret.txt") is None
    assert stored_file(out, "/etc/passwd") is None
    assert stored_file(out, None) is None
    row = export_row(out, {"url": "u", "outcome": "stored", "path": "../secret.txt"})
    assert row["file"] is None
