"""The metrics' table: names by Prometheus' conventions, bounded labels, and the
README's table kept equal to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crawler.metrics.catalog import (
    COUNTER,
    DOWNLOADER,
    GAUGE,
    HARVESTER,
    HISTOGRAM,
    METRICS,
    OTHER,
    reason_label,
    top_labels,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_names_follow_prometheus_conventions():
    names = [spec.name for spec in METRICS]
    assert len(names) == len(set(names))
    for spec in METRICS:
        assert re.fullmatch(r"crawler_[a-z0-9_]+", spec.name), spec.name
        assert spec.name.endswith("_total") == (spec.kind == COUNTER), spec.name
        assert spec.kind in (COUNTER, GAUGE, HISTOGRAM) and spec.side in (HARVESTER, DOWNLOADER)
        if spec.kind == HISTOGRAM:
            assert spec.name.endswith(("_seconds", "_bytes")), "histograms in base units"
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets
        assert spec.side == HARVESTER or spec.name.startswith("crawler_download_")
        assert "le" not in spec.labels and spec.help.endswith(".")


@pytest.mark.parametrize(
    ("error", "label"),
    [
        ("http_404", "http_404"),
        ("http_599", "http_599"),
        ("http_999", OTHER),  # a status no server should send
        ("http_", OTHER),
        ("timeout: read timed out after 30 s", "timeout"),
        ("store_error: no space left on device: '/x'", "store_error"),
        ("robots_unreachable: tls_error: certificate", "robots_unreachable"),
        (None, "unknown"),
        ("", "unknown"),
        ("Bad Thing: from a peer", OTHER),
        ("x" * 41, OTHER),
        ("é_code: x", OTHER),
        ('bad"quote: x', OTHER),
    ],
)
def test_reason_labels_are_codes_or_other(error, label):
    assert reason_label(error) == label


def test_top_labels_keep_the_largest_and_sum_the_rest():
    rows = [(f"h{i}", {"waiting": i, "stored": 1}) for i in range(10)]
    kept = top_labels(rows, 3)
    assert list(kept) == ["h9", "h8", "h7", OTHER]
    assert kept[OTHER] == {"waiting": sum(range(7)), "stored": 7}
    assert top_labels(rows, 20) == {key: values for key, values in reversed(rows)}
    assert top_labels([], 5) == {}
    # A host named like the bucket of the rest is summed into it, never a second series.
    assert top_labels([(OTHER, {"waiting": 5}), ("a", {"waiting": 1})], 5) == {
        "a": {"waiting": 1},
        OTHER: {"waiting": 5},
    }


def readme_metrics_table() -> dict[str, tuple[str, str, str, str]]:
    """The README's "Metrics" table: name -> (type, labels, served by, what it counts)."""
    text = README.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`crawler_"):
            rows[cells[0].strip("`")] = (cells[1], cells[2], cells[3], cells[4])
    return rows


def test_the_readme_table_lists_every_metric_as_it_is():
    table = readme_metrics_table()
    assert set(table) == {spec.name for spec in METRICS}
    for spec in METRICS:
        kind, labels, side, help_text = table[spec.name]
        assert kind == spec.kind, spec.name
        assert labels == (", ".join(f"`{label}`" for label in spec.labels) or "-"), spec.name
        assert side == spec.side, spec.name
        assert help_text == spec.help, spec.name
