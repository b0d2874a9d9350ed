"""The results tables (one per site, a row per tool and latency) and the JSON file behind them.

Besides the images stored and the time, each row has the pages fetched (page GETs in
nginx's access log: the list downloaders fetch none), pages/s, and CPU ms per page
fetched, the cost of the page path that the image-heavy site hardly shows.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import psutil

COLUMNS = (
    ("tool", "<"),
    ("latency", ">"),
    ("stored/expected", ">"),
    ("pages", ">"),
    ("wall s", ">"),
    ("pages/s", ">"),
    ("images/s", ">"),
    ("CPU ms/page", ">"),
    ("CPU s/1k img", ">"),
    ("user s/1k", ">"),
    ("peak RSS MB", ">"),
    ("dup GETs", ">"),
)


def row(result: dict) -> list[str]:
    rss = f"{result['peak_rss_mb']:.0f}"
    roles = result.get("peak_rss_mb_by_role", {})
    if len(roles) > 1:
        rss += " (" + ", ".join(f"{role} {mb:.0f}" for role, mb in roles.items()) + ")"
    wall = f"{result['wall_s']:.1f}"
    if "wall_range" in result:
        low, high = result["wall_range"]
        wall += f" ({low:.1f}-{high:.1f})"
    wall += " TIMEOUT" if result["timed_out"] else ""
    cpu = result["cpu_s_per_1k"]
    per_page = result.get("cpu_ms_per_page")
    return [
        result["tool"],
        f"{result['latency_ms']} ms",
        f"{result['stored']}/{result['expected']}",
        str(result.get("pages_fetched", "-")),
        wall,
        f"{result.get('pages_per_s', 0):.0f}",
        f"{result['images_per_s']:.0f}",
        "-" if per_page is None else f"{per_page:.2f}",
        "-" if cpu is None else f"{cpu:.2f}",
        "-" if result.get("user_s_per_1k") is None else f"{result['user_s_per_1k']:.2f}",
        rss,
        str(result["duplicate_gets"]),
    ]


def medians(results: list[dict]) -> list[dict]:
    """Per site, tool and latency, the run with the median wall time (all runs stay in the
    JSON).

    The median of whole runs rather than of each figure, so that a row's figures
    belong together; the row says how many runs there were and their wall-time range.
    """
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for result in results:
        key = (result["site"], result["tool"], result["latency_ms"])
        groups.setdefault(key, []).append(result)
    rows = []
    for runs in groups.values():
        ordered = sorted(runs, key=lambda r: r["wall_s"])
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        if len(runs) > 1:
            chosen["wall_range"] = (ordered[0]["wall_s"], ordered[-1]["wall_s"])
        rows.append(chosen)
    return rows


def table(results: list[dict]) -> str:
    rows = [[name for name, _ in COLUMNS], *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if align == "<" else cell.rjust(w)
            for cell, w, (_, align) in zip(cells, widths, COLUMNS, strict=True)
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def machine() -> dict:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path, params: dict, sites: dict[str, dict], results: list[dict]) -> None:
    """`sites`: each site's summary by name; each result names its site."""
    document = {"machine": machine(), "params": params, "sites": sites, "results": results}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
