"""Tests for ``crawler status``'s text (``format_status``, pure)."""

from __future__ import annotations

from crawler.broker.broker import Broker
from crawler.output.status import format_status


def test_a_node_failing_on_its_own_side_is_shown_with_its_fault() -> None:
    broker = Broker(lease_seconds=30.0, max_attempts=3, node_timeout=12.0, clock=lambda: 100.0)
    broker.add_tasks([("http://a.test/1.png", "http://a.test/", "img")])
    broker.join("sick", {"host": "box", "pid": 7, "concurrency": 4})
    broker.join("well", {})
    (task,) = broker.lease_batch("sick", 1, 0)["tasks"]
    error = "store_error: No space left on device"
    result = {"id": task[0], "outcome": "failed", "retryable": True, "error": error}
    broker.report_results("sick", [{**result, "local": "storage"}])

    text = format_status(broker.status(), "127.0.0.1:5599")

    sick = text.split("sick", 1)[1].split("well", 1)[0]
    assert f"failing on its own side: {error} (handed back 1, no leases for 5.0 s)" in sick
    assert "failing" not in text.split("well", 1)[1]
    assert "0 failed" in text  # the handed-back task is waiting, not failed
