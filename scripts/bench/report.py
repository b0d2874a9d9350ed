"""The results table (one row per tool and latency) and the JSON file behind it."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import psutil

COLUMNS = (
    ("tool", "<"),
    ("latency", ">"),
    ("stored/expected", ">"),
    ("wall s", ">"),
    ("images/s", ">"),
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
    return [
        result["tool"],
        f"{result['latency_ms']} ms",
        f"{result['stored']}/{result['expected']}",
        wall,
        f"{result['images_per_s']:.0f}",
        "-" if cpu is None else f"{cpu:.2f}",
        "-" if result.get("user_s_per_1k") is None else f"{result['user_s_per_1k']:.2f}",
        rss,
        str(result["duplicate_gets"]),
    ]


def medians(results: list[dict]) -> list[dict]:
    """Per tool and latency, the run with the median wall time (all runs stay in the JSON).

    The median of whole runs rather than of each figure, so that a row's figures
    belong together; the row says how many runs there were and their wall-time range.
    """
    groups: dict[tuple[str, int], list[dict]] = {}
    for result in results:
        groups.setdefault((result["tool"], result["latency_ms"]), []).append(result)
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


def write_json(path: Path, params: dict, site: dict, results: list[dict]) -> None:
    document = {"machine": machine(), "params": params, "site": site, "results": results}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
