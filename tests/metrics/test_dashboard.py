"""docs/grafana-dashboard.json against the metrics catalogue (crawler/metrics/catalog.py).

Every query of the dashboard names only metrics the crawler exports, with their own
labels; every metric of the catalogue is shown somewhere; counters and histogram series
are read through rate()/increase(), gauges never are; the panels are laid out without
overlap and read from the ``${datasource}`` variable, not from one Grafana's data source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.metrics.catalog import BY_NAME, COUNTER, HISTOGRAM, METRICS, MetricSpec

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "bargauge"}

# Metrics of the catalogue the dashboard leaves out on purpose: name -> reason. None now.
NOT_SHOWN: dict[str, str] = {}

PROMETHEUS_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
RATE_FUNCTIONS = ("rate", "irate", "increase")
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}

# The values of the ``state`` labels (see the catalogue's help and Broker.figures).
TASK_STATES = {"waiting", "leased", "stored", "failed"}
STATE_VALUES = {
    "crawler_tasks": TASK_STATES,
    "crawler_host_tasks": TASK_STATES,
    "crawler_node_tasks": {"leased", "stored", "failed"},
    "crawler_hosts": {"busy", "throttled", "paused", "down"},
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:])crawler_[A-Za-z0-9_:]*")
_SELECTOR = re.compile(r'(crawler_[A-Za-z0-9_:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}')
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(crawler_[A-Za-z0-9_:]*)[^,]*,\s*(\w+)\s*\)")
_VARIABLE = re.compile(r"\$\{?(\w+)")
_LITERAL_ALTERNATIVES = re.compile(r"[a-z_]+(\|[a-z_]+)*")


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows too."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = [
        (f"panel {panel.get('title')!r}", target["expr"])
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    found += [
        (f"variable {variable['name']!r}", variable_query(variable))
        for variable in dashboard.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    ]
    return found


def series(name: str) -> tuple[MetricSpec, str] | None:
    """The catalogue's metric a series name belongs to, and the histogram suffix it
    carries ("" for counters and gauges); None for a name the crawler does not export
    (a histogram's bare name included: Prometheus has no series by that name)."""
    spec = BY_NAME.get(name)
    if spec is not None:
        return None if spec.kind == HISTOGRAM else (spec, "")
    for suffix in HISTOGRAM_SUFFIXES:
        base = BY_NAME.get(name.removesuffix(suffix))
        if name.endswith(suffix) and base is not None and base.kind == HISTOGRAM:
            return base, suffix
    return None


def allowed_labels(spec: MetricSpec, suffix: str) -> set[str]:
    return set(spec.labels) | PROMETHEUS_LABELS | ({"le"} if suffix == "_bucket" else set())


def metrics_of(expr: str) -> list[str]:
    """The identifiers starting with crawler_, string literals left out."""
    return _IDENTIFIER.findall(_STRING.sub('""', expr))


def problems(expr: str, variables: set[str]) -> list[str]:
    """What is wrong with one PromQL expression (empty if nothing)."""
    bare = _STRING.sub('""', expr)
    found: list[str] = []
    known: list[tuple[str, MetricSpec, str]] = []
    for match in _IDENTIFIER.finditer(bare):
        name = match.group()
        resolved = series(name)
        if resolved is None:
            found.append(f"{name}: no such series in the catalogue")
            continue
        spec, suffix = resolved
        known.append((name, spec, suffix))
        rated = re.search(rf"\b({'|'.join(RATE_FUNCTIONS)})\s*\(\s*$", bare[: match.start()])
        if (spec.kind == COUNTER or suffix in ("_bucket", "_sum", "_count")) and not rated:
            found.append(f"{name}: a counter, read it through rate() or increase()")
        if spec.kind not in (COUNTER, HISTOGRAM) and rated:
            found.append(f"{name}: a gauge, rate() and increase() do not apply")
    if not metrics_of(expr) and "label_values" not in expr:
        found.append("no crawler_ metric in it")

    selectors = list(_SELECTOR.finditer(expr))
    if bare.count("{") != len(selectors):
        found.append("a {...} selector not attached to a crawler_ metric")
    for selector in selectors:
        name, body = selector.groups()
        resolved = series(name)
        if resolved is None:
            continue  # reported above
        labels = allowed_labels(*resolved)
        position = 0
        while position < len(body) and body[position:].strip():
            matcher = _MATCHER.match(body, position)
            if matcher is None:
                found.append(f"{name}: cannot read the matchers {body!r}")
                break
            label, op, value = matcher.group(1, 2, 3)
            position = matcher.end()
            if label not in labels:
                found.append(f"{name}: no label {label!r} (it has {sorted(labels)})")
            states = STATE_VALUES.get(name)
            if label == "state" and states and op in ("=", "=~"):
                if _LITERAL_ALTERNATIVES.fullmatch(value) is None:
                    found.append(f"{name}: state matcher {value!r} is not a list of values")
                else:
                    wrong = set(value.split("|")) - states
                    if wrong:
                        found.append(f"{name}: no state {sorted(wrong)} (only {sorted(states)})")

    for keyword, group in _GROUPING.findall(bare):
        for label in filter(None, (part.strip() for part in group.split(","))):
            for name, spec, suffix in known:
                if label not in allowed_labels(spec, suffix):
                    found.append(f"{keyword} ({label}): {name} has no such label")

    for name, label in _LABEL_VALUES.findall(expr):
        resolved = series(name)
        if resolved is not None and label not in allowed_labels(*resolved):
            found.append(f"label_values: {name} has no label {label!r}")

    for variable in _VARIABLE.findall(expr):
        if variable not in variables | GRAFANA_VARIABLES:
            found.append(f"${variable}: no such dashboard variable")
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def variables(dashboard: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in dashboard["templating"]["list"]}


def test_the_dashboard_is_a_grafana_json_model(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard.get("id") is None  # an import makes its own
    panels = list(walk_panels(dashboard["panels"]))
    assert len([panel for panel in panels if panel["type"] != "row"]) >= 20
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(id_, int) for id_ in ids)
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel.get("title"), panel["id"]
        if panel["type"] != "row":
            refs = [target["refId"] for target in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), panel["title"]
            assert all(target.get("expr", "").strip() for target in panel["targets"])


def test_panels_fit_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in walk_panels(dashboard["panels"]):
        grid = panel["gridPos"]
        x, y, w, h = (grid[key] for key in ("x", "y", "w", "h"))
        assert all(isinstance(value, int) for value in (x, y, w, h)), panel["title"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 24, panel["title"]
    for panel in dashboard["panels"]:  # those in collapsed rows move when they open
        grid = panel["gridPos"]
        for cell_x in range(grid["x"], grid["x"] + grid["w"]):
            for cell_y in range(grid["y"], grid["y"] + grid["h"]):
                other = taken.setdefault((cell_x, cell_y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_every_query_reads_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "__inputs" not in dashboard
    for panel in walk_panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]

    def prometheus_refs(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if node.get("type") == "prometheus" and "uid" in node:
                yield node["uid"]
            for value in node.values():
                yield from prometheus_refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from prometheus_refs(value)

    uids = set(prometheus_refs(dashboard))
    assert uids == {"${datasource}"}, f"data source UIDs fixed to one Grafana: {uids}"


def test_every_query_names_catalogue_metrics_and_their_labels(
    dashboard: dict[str, Any], variables: set[str]
) -> None:
    found = [
        f"{where}: {expr}\n    {problem}"
        for where, expr in expressions(dashboard)
        for problem in problems(expr, variables)
    ]
    assert not found, "\n".join(found)


def test_every_catalogue_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    shown = {
        resolved[0].name
        for _, expr in expressions(dashboard)
        for name in metrics_of(expr)
        if (resolved := series(name)) is not None
    }
    for name in NOT_SHOWN:
        assert name in BY_NAME and name not in shown, f"NOT_SHOWN is stale: {name}"
    missing = [spec.name for spec in METRICS if spec.name not in shown | set(NOT_SHOWN)]
    assert not missing, f"metrics of the catalogue on no panel: {missing}"


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("sum(crawler_images_stored)", "no such series"),
        ("crawler_page_fetch_seconds", "no such series"),  # a histogram's bare name
        ("sum(rate(crawler_tasks_count[5m]))", "no such series"),
        ("sum(crawler_images_stored_total)", "rate() or increase()"),
        ("sum(rate(crawler_tasks[5m]))", "a gauge"),
        ("sum by (host) (rate(crawler_images_failed_total[5m]))", "by (host)"),
        ("sum by (le) (rate(crawler_download_fetch_seconds_sum[5m]))", "by (le)"),
        ('crawler_tasks{node="a"}', "no label 'node'"),
        ('crawler_tasks{state="done"}', "no state ['done']"),
        ('crawler_hosts{state=~"busy|idle"}', "no state ['idle']"),
        ('crawler_tasks{state=~".*"}', "not a list of values"),
        ('{__name__="crawler_tasks"}', "not attached"),
        ('crawler_download_in_flight{instance=~"$node"}', "$node"),
        ("label_values(crawler_download_pool_size, node)", "no label 'node'"),
        ("up", "no crawler_ metric"),
    ],
)
def test_the_checks_catch_a_wrong_query(expr: str, expected: str) -> None:
    found = problems(expr, {"datasource", "instance"})
    assert any(expected in problem for problem in found), found


def test_the_checks_pass_a_right_query() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (instance, le) "
        '(rate(crawler_download_fetch_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
    )
    assert problems(expr, {"instance"}) == []
