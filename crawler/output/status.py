"""``crawler status``: ask a running harvester how the crawl is going.

Uses the same authenticated connection as a downloader node, but does not join: the
harvester does not count it as a node. ``format_status`` is pure, for the terminal.
"""

from __future__ import annotations

from typing import Any

from crawler import wire
from crawler.config import TlsConfig


def fetch_status(url: str, authkey: bytes, tls: TlsConfig | None = None) -> dict[str, Any]:
    """The broker's ``status()`` at ``url`` (``wire.connect``, in TLS by ``tls``).
    Raises ``BrokerUnavailable`` (nothing there, or gone), ``AuthKeyError`` (another
    key), ``TlsError`` (a certificate refused) or ``NotAHarvester`` (another server, or
    one that said nothing in time)."""
    client = wire.connect(url, authkey, tls)
    try:
        return client.status()
    finally:
        client.close()


def format_status(status: dict[str, Any], where: str) -> str:
    queue, crawl = status["queue"], status.get("crawl", {})
    state = "finished, closing" if status.get("done") else "running"
    if crawl.get("stopping"):
        state = "stopping"
    lines = [f"harvester {where}: {state}"]
    if crawl.get("seeds"):
        lines.append(f"  seeds: {crawl['seeds']}")
    if "pages" in crawl:
        lines.append(
            f"  pages: {crawl['pages']} fetched, {crawl.get('page_errors', 0)} failed, "
            f"{crawl.get('frontier', 0)} to go"
        )
    lines.append(
        f"  images: {queue['tasks']} known, {queue['waiting']} waiting, "
        f"{queue['leased']} leased, {queue['stored']} stored, {queue['failed']} failed"
        + (f", {crawl['images_per_s']} images/s" if "images_per_s" in crawl else "")
    )
    if crawl.get("images_left_out"):
        lines.append(f"  {crawl['images_left_out']} image URLs left out (max_images)")
    nodes = status.get("nodes", [])
    lines.append(f"  nodes ({len(nodes)}):" if nodes else "  nodes: none connected")
    for node in nodes:
        lines.append(
            f"    {node['node']:<24} leased {node['leased']:>4}  stored {node['stored']:>6}  "
            f"failed {node['failed']:>4}  heartbeat {node['last_seen_s']:.1f} s ago"
            + (f"  ({node['host']}, pid {node['pid']})" if node.get("host") else "")
        )
        if node.get("fault"):
            paused = f", no leases for {node['paused_s']} s" if node.get("paused_s") else ""
            lines.append(
                f"      failing on its own side: {node['fault']} "
                f"(handed back {node.get('handed_back', 0)}{paused})"
            )
    hosts = status.get("hosts", [])
    if hosts:
        lines.append("  hosts (busy or throttled):")
    for host in hosts:
        notes = []
        if host["paused"]:
            notes.append(f"paused {host['paused']} s")
        if host["delay"]:
            notes.append(f"delay {host['delay']} s")
        if host["throttled"]:
            notes.append(f"{host['throttled']} x 429/503")
        if host["down"]:
            notes.append("not answering")
        lines.append(
            f"    {host['host']:<32} in flight {host['in_flight']}/{host['limit']}"
            + (f"  ({', '.join(notes)})" if notes else "")
        )
    return "\n".join(lines)
