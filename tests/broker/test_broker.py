"""Tests for the lease bookkeeping (``TaskBoard``, pure) and the thread-safe ``Broker``."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from crawler.broker import broker as broker_module
from crawler.broker.board import MAX_LOST_LEASES, TaskBoard, final_record, retry_delay
from crawler.broker.broker import Broker
from crawler.broker.politeness import Politeness
from crawler.config import PolitenessConfig
from crawler.records import AddressPolicyRecord, LeaseReply, Result, record_line

LEASE = 30.0
T0 = 1000.0
JOIN_TIMEOUT = 5.0


def board_with(urls: list[str], max_attempts: int = 3) -> TaskBoard:
    board = TaskBoard(lease_seconds=LEASE, max_attempts=max_attempts)
    for url in urls:
        board.add(url, "http://site.test/", "img")
    return board


def stored(task_id: int, **extra: Any) -> Result:
    return result_of({"id": task_id, "outcome": "stored", "retryable": False, **extra})


def failure(task_id: int, retryable: bool, error: str = "http_503") -> Result:
    return result_of({"id": task_id, "outcome": "failed", "retryable": retryable, "error": error})


def result_of(wire: dict[str, Any]) -> Result:
    result = Result.from_wire(wire)
    assert result is not None
    return result


def leased_ids(tasks: list[Any]) -> list[int]:
    return [task.id for task in tasks]


# -- TaskBoard: adding and leasing ------------------------------------------------


def test_add_queues_each_url_once() -> None:
    board = TaskBoard(lease_seconds=LEASE, max_attempts=3)

    first = board.add("http://a.test/1.png", "http://a.test/", "img")
    again = board.add("http://a.test/1.png", "http://a.test/other", "css")
    second = board.add("http://a.test/2.png", "http://a.test/", "img")

    assert first is not None and second is not None
    assert again is None
    assert first.id != second.id
    assert (first.url, first.page, first.kind, first.state) == (
        "http://a.test/1.png",
        "http://a.test/",
        "img",
        "pending",
    )
    assert board.counts()["tasks"] == 2
    assert leased_ids(board.lease("n1", 10, T0)) == [first.id, second.id]


def test_lease_hands_out_up_to_limit_in_queue_order() -> None:
    board = board_with([f"http://a.test/{i}.png" for i in range(5)])

    first = board.lease("n1", 3, T0)
    second = board.lease("n2", 3, T0)
    third = board.lease("n3", 3, T0)

    assert leased_ids(first) == [1, 2, 3]
    assert leased_ids(second) == [4, 5]
    assert third == []
    for task in first:
        assert (task.state, task.owner, task.deadline, task.attempts) == (
            "leased",
            "n1",
            T0 + LEASE,
            1,
        )
    assert all(task.owner == "n2" for task in second)
    assert board.counts() == {"tasks": 5, "leased": 5, "stored": 0, "failed": 0, "waiting": 0}


def test_lease_with_zero_limit_hands_out_nothing() -> None:
    board = board_with(["http://a.test/1.png"])

    assert board.lease("n1", 0, T0) == []
    assert board.tasks[1].state == "pending"


def test_extend_moves_the_deadline_only_for_the_owner() -> None:
    board = board_with(["http://a.test/1.png", "http://a.test/2.png"])
    board.lease("n1", 1, T0)

    board.extend("n2", [1], T0 + 10)
    assert board.tasks[1].deadline == T0 + LEASE

    board.extend("n1", [1, 2, 99], T0 + 10)
    assert board.tasks[1].deadline == T0 + 10 + LEASE
    # Task 2 is not leased: a heartbeat naming it changes nothing.
    assert (board.tasks[2].state, board.tasks[2].deadline) == ("pending", 0.0)


def test_extended_lease_does_not_expire_at_the_old_deadline() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)
    board.extend("n1", [1], T0 + 20)

    assert board.expire(T0 + LEASE + 1) == []
    assert board.tasks[1].state == "leased"


# -- TaskBoard: taking leases back --------------------------------------------------


def test_expire_returns_overdue_leases_to_the_queue() -> None:
    board = board_with(["http://a.test/1.png", "http://a.test/2.png"])
    board.lease("n1", 1, T0)
    board.lease("n2", 1, T0 + 10)

    finished = board.expire(T0 + LEASE + 1)

    assert finished == []
    assert (board.tasks[1].state, board.tasks[1].owner) == ("pending", None)
    assert board.tasks[2].state == "leased"  # its deadline is T0 + 10 + LEASE
    again = board.lease("n3", 5, T0 + LEASE + 1)
    assert leased_ids(again) == [1]
    assert (again[0].owner, again[0].attempts) == ("n3", 2)


def test_expire_dead_letters_only_after_max_lost_leases() -> None:
    # Lost leases are not the task's fault: max_attempts (2) does not limit them.
    board = board_with(["http://a.test/1.png"], max_attempts=2)
    now = T0
    for lost in range(1, MAX_LOST_LEASES + 1):
        assert leased_ids(board.lease("n1", 1, now)) == [1]
        now += LEASE + 1
        finished = board.expire(now)
        if lost < MAX_LOST_LEASES:
            assert finished == [] and board.tasks[1].state == "pending"

    assert leased_ids(finished) == [1]
    task = board.tasks[1]
    assert task.state == "failed"
    assert task.result is not None
    assert (task.result.outcome, task.result.error) == ("failed", "lease_expired")
    assert task.result.url == "http://a.test/1.png"
    assert board.lease("n2", 1, now) == []
    assert board.counts() == {"tasks": 1, "leased": 0, "stored": 0, "failed": 1, "waiting": 0}
    assert board.all_final


def test_release_node_takes_back_only_that_nodes_leases() -> None:
    board = board_with(["http://a.test/1.png", "http://a.test/2.png", "http://a.test/3.png"])
    board.lease("n1", 2, T0)
    board.lease("n2", 1, T0)

    assert board.release_node("n1", T0 + 1) == []

    assert [board.tasks[i].state for i in (1, 2, 3)] == ["pending", "pending", "leased"]
    assert board.tasks[3].owner == "n2"
    assert sorted(leased_ids(board.lease("n3", 5, T0 + 1))) == [1, 2]


def test_release_node_fails_tasks_after_max_lost_leases_with_node_lost() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=1)
    for lost in range(1, MAX_LOST_LEASES + 1):
        board.lease("n1", 1, T0 + lost)
        finished = board.release_node("n1", T0 + lost)
        assert (finished == []) == (lost < MAX_LOST_LEASES)

    assert leased_ids(finished) == [1]
    assert board.tasks[1].state == "failed"
    assert board.tasks[1].result is not None
    assert board.tasks[1].result.error == "node_lost"


def test_a_lost_lease_does_not_use_up_an_attempt() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=2)
    board.lease("n1", 1, T0)
    board.release_node("n1", T0 + 1)
    board.lease("n2", 1, T0 + 2)
    failure_result = result_of(
        {
            "id": 1,
            "outcome": "failed",
            "retryable": True,
            "error": "http_500",
            "status": 500,
        }
    )
    assert board.complete("n2", failure_result, T0 + 3, 0.0) is None, "one failure of two"
    assert (board.tasks[1].state, board.tasks[1].failures) == ("pending", 1)
    board.lease("n2", 1, T0 + 100)
    finished = board.complete("n2", failure_result, T0 + 101, 0.0)
    assert (finished.state, finished.attempts, finished.failures) == ("failed", 3, 2)


# -- TaskBoard: results -------------------------------------------------------------


def test_complete_stores_once_and_ignores_a_second_result() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)

    task = board.complete("n1", stored(1, sha256="aa"), T0 + 1, 0.5)
    again = board.complete("n1", stored(1, sha256="bb"), T0 + 2, 0.5)
    late_failure = board.complete("n1", failure(1, retryable=False), T0 + 3, 0.5)

    assert task is not None and task.state == "stored"
    assert again is None and late_failure is None
    # The database keeps the first result, as the task's manifest record.
    assert final_record(board.tasks[1]) == final_record(task)
    assert (task.result, board.tasks[1].result.sha256) == (stored(1, sha256="aa"), "aa")
    # A resume rebuilds the very manifest line the live harvester wrote.
    assert record_line(final_record(board.tasks[1]).to_wire()) == task.line
    assert board.counts() == {"tasks": 1, "leased": 0, "stored": 1, "failed": 0, "waiting": 0}


def test_complete_ignores_unknown_task_ids() -> None:
    board = board_with(["http://a.test/1.png"])

    assert board.complete("n1", stored(42), T0, 0.5) is None
    assert Result.from_wire({"outcome": "stored"}) is None  # no id: not a result
    assert board.counts()["stored"] == 0


def test_stored_result_finalizes_after_the_lease_went_to_another_node() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)
    board.expire(T0 + LEASE + 1)
    board.lease("n2", 1, T0 + LEASE + 1)

    task = board.complete("n1", stored(1, node="n1"), T0 + LEASE + 2, 0.5)
    from_new_owner = board.complete("n2", stored(1, node="n2"), T0 + LEASE + 3, 0.5)

    assert task is not None and task.state == "stored"
    assert from_new_owner is None
    assert final_record(board.tasks[1]) == final_record(task)
    assert (task.result, board.tasks[1].result.node) == (stored(1, node="n1"), "n1")
    assert board.counts()["leased"] == 0
    assert board.all_final


def test_late_stored_result_keeps_a_requeued_task_from_being_leased_again() -> None:
    board = board_with(["http://a.test/1.png", "http://a.test/2.png"])
    board.lease("n1", 1, T0)
    board.expire(T0 + LEASE + 1)

    assert board.complete("n1", stored(1), T0 + LEASE + 2, 0.5) is not None

    assert leased_ids(board.lease("n2", 5, T0 + LEASE + 2)) == [2]
    assert board.tasks[1].state == "stored"


def test_failure_from_a_node_that_lost_its_lease_is_ignored() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)
    board.expire(T0 + LEASE + 1)
    board.lease("n2", 1, T0 + LEASE + 1)

    for retryable in (False, True):
        assert board.complete("n1", failure(1, retryable), T0 + LEASE + 2, 0.5) is None

    task = board.tasks[1]
    assert (task.state, task.owner, task.result) == ("leased", "n2", None)
    assert board.counts()["leased"] == 1
    # The new owner's result still counts.
    finished = board.complete("n2", stored(1), T0 + LEASE + 3, 0.5)
    assert (finished.id, finished.state, finished.owner) == (task.id, "stored", "n2")
    assert board.tasks[1].state == "stored"


def test_retryable_failure_waits_retry_delay_before_it_can_be_leased_again() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)
    jitter = 0.5
    due = T0 + 1 + retry_delay(1, jitter)

    assert board.complete("n1", failure(1, retryable=True), T0 + 1, jitter) is None

    task = board.tasks[1]
    assert (task.state, task.owner) == ("pending", None)
    assert board.next_due() == due
    assert board.lease("n2", 5, T0 + 1) == []
    assert board.lease("n2", 5, due - 0.01) == []
    again = board.lease("n2", 5, due)
    assert leased_ids(again) == [1]
    assert (again[0].owner, again[0].attempts) == ("n2", 2)
    assert board.next_due() is None


def test_retry_waits_longer_after_each_attempt() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=5)
    now = T0
    waits = []
    for _ in range(3):
        (task,) = board.lease("n1", 1, now)
        board.complete("n1", failure(task.id, retryable=True), now, 0.0)
        due = board.next_due()
        assert due is not None
        waits.append(due - now)
        now = due

    assert waits == [retry_delay(1, 0.0), retry_delay(2, 0.0), retry_delay(3, 0.0)]
    assert waits[0] < waits[1] < waits[2]


def test_non_retryable_failure_is_final_at_once() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)

    task = board.complete("n1", failure(1, retryable=False, error="http_404"), T0 + 1, 0.5)

    assert task is not None and task.state == "failed"
    assert task.result == failure(1, retryable=False, error="http_404")
    assert board.next_due() is None
    assert board.lease("n1", 1, T0 + 1000) == []
    assert board.all_final


def test_retryable_failure_is_final_after_max_attempts() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=2)
    board.lease("n1", 1, T0)
    assert board.complete("n1", failure(1, retryable=True), T0, 0.5) is None
    due = board.next_due()
    assert due is not None
    assert leased_ids(board.lease("n1", 1, due)) == [1]

    task = board.complete("n1", failure(1, retryable=True), due, 0.5)

    assert task is not None
    assert (task.state, task.attempts) == ("failed", 2)
    assert board.lease("n1", 1, due + 1000) == []


def test_counts_and_all_final_follow_every_state() -> None:
    board = board_with([f"http://a.test/{i}.png" for i in range(1, 6)])
    assert not board.all_final
    board.lease("n1", 3, T0)
    board.complete("n1", stored(1), T0, 0.5)
    board.complete("n1", failure(2, retryable=False), T0, 0.5)

    assert board.counts() == {"tasks": 5, "leased": 1, "stored": 1, "failed": 1, "waiting": 2}
    assert not board.all_final

    for task in board.lease("n1", 5, T0):
        board.complete("n1", stored(task.id), T0, 0.5)
    board.complete("n1", stored(3), T0, 0.5)

    assert board.counts() == {"tasks": 5, "leased": 0, "stored": 4, "failed": 1, "waiting": 0}
    assert board.all_final


# -- retry_delay -------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_retry_delay_doubles_per_attempt_within_the_jitter_range(attempt: int) -> None:
    base = 2.0 ** (attempt - 1)

    assert retry_delay(attempt, 0.0) == base / 2
    assert base / 2 <= retry_delay(attempt, 0.5) < base
    assert retry_delay(attempt, 0.999999) < base
    assert retry_delay(attempt, 0.999999) == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("attempt", [7, 8, 20, 100, 5000])
def test_retry_delay_is_capped_at_sixty_seconds(attempt: int) -> None:
    assert retry_delay(attempt, 0.0) == 30.0
    assert 30.0 <= retry_delay(attempt, 0.7) < 60.0
    assert retry_delay(attempt, 0.999999) <= 60.0


# -- Broker --------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_broker(clock: FakeClock, max_attempts: int = 3, node_timeout: float = 12.0) -> Broker:
    return Broker(
        lease_seconds=LEASE, max_attempts=max_attempts, node_timeout=node_timeout, clock=clock
    )


def add_urls(broker: Broker, count: int) -> None:
    broker.add_tasks((f"http://a.test/{i}.png", "http://a.test/", "img") for i in range(count))


def test_join_returns_the_timings_a_node_must_respect(clock: FakeClock) -> None:
    broker = make_broker(clock, node_timeout=12.0)

    assert broker.join("n1", {}) == {"lease_seconds": LEASE, "heartbeat_seconds": 4.0}


def test_add_tasks_returns_only_new_tasks(clock: FakeClock) -> None:
    broker = make_broker(clock)

    first, _ = broker.add_tasks([("http://a.test/1.png", "p", "img")] * 2)
    again, left_out = broker.add_tasks(
        [("http://a.test/1.png", "p", "img"), ("http://a.test/2.png", "p", "img")]
    )

    assert [task.url for task in first] == ["http://a.test/1.png"]
    assert [task.url for task in again] == ["http://a.test/2.png"]
    assert left_out == 0
    assert broker.counts()["tasks"] == 2


def test_add_tasks_stops_at_the_limit_and_counts_new_urls_left_out(clock: FakeClock) -> None:
    broker = make_broker(clock)
    broker.add_tasks([("http://a.test/known.png", "p", "img")])
    items = [
        ("http://a.test/1.png", "p", "img"),
        ("http://a.test/known.png", "p", "img"),  # known: neither added nor left out
        ("http://a.test/2.png", "p", "img"),
        ("http://a.test/3.png", "p", "img"),
        ("http://a.test/3.png", "p", "img"),  # the same URL twice counts once
        ("http://a.test/known.png", "p", "img"),
    ]

    added, left_out = broker.add_tasks(items, limit=2)

    assert [task.url for task in added] == ["http://a.test/1.png", "http://a.test/2.png"]
    assert left_out == 1
    assert broker.counts()["tasks"] == 3


def test_node_calls_produce_node_events(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 1)

    broker.join("n1", {"processes": 2})
    broker.join("n1", {"processes": 2})
    reply = broker.lease_batch("n1", 5, wait=0)
    broker.extend_leases("n1", [1])
    broker.report_results("n1", [stored(1).to_wire()])
    _, events = broker.take_updates()

    assert reply == {"tasks": [[1, "http://a.test/0.png"]], "done": False}
    assert events == [("node_joined", {"node": "n1", "processes": 2})]

    broker.leave("n1")
    broker.leave("n1")
    assert broker.take_updates()[1] == [("node_left", {"node": "n1"})]
    assert broker.counts()["nodes"] == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda broker: broker.lease_batch("ghost", 1, wait=0),
        lambda broker: broker.extend_leases("ghost", []),
        lambda broker: broker.report_results("ghost", []),
    ],
    ids=["lease_batch", "extend_leases", "report_results"],
)
def test_a_node_that_never_joined_is_welcomed_back(clock: FakeClock, call: Any) -> None:
    broker = make_broker(clock)

    call(broker)

    assert broker.take_updates()[1] == [("node_joined", {"node": "ghost", "rejoined": True})]
    assert broker.counts()["nodes"] == 1


def test_finished_tasks_come_out_of_take_updates_once(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 3)
    broker.join("n1", {})
    broker.lease_batch("n1", 3, wait=0)

    count = broker.report_results(
        "n1",
        [r.to_wire() for r in (stored(1), failure(2, False), failure(3, retryable=True))],
    )
    finished, _ = broker.take_updates()
    duplicate = broker.report_results("n1", [stored(1).to_wire()])

    assert count == 2
    assert [(task.id, task.state) for task in finished] == [(1, "stored"), (2, "failed")]
    assert duplicate == 0
    assert broker.take_updates() == ([], [])
    assert not broker.all_final()


def test_wait_for_updates_returns_when_a_result_arrives(clock: FakeClock) -> None:
    """The harvester's idle wait ends with the next result batch, not its timeout."""
    broker = make_broker(clock)
    add_urls(broker, 1)
    broker.join("n1", {})
    broker.take_updates()  # the join event
    broker.lease_batch("n1", 1, wait=0)

    started = time.monotonic()
    broker.wait_for_updates(0.05)  # nothing comes: the timeout
    assert time.monotonic() - started >= 0.04

    reporter = threading.Timer(0.1, broker.report_results, ("n1", [stored(1).to_wire()]))
    reporter.start()
    started = time.monotonic()
    broker.wait_for_updates(30.0)
    waited = time.monotonic() - started
    reporter.join()
    assert waited < 10.0, "woken by the result, not by the 30 s timeout"
    started = time.monotonic()
    broker.wait_for_updates(30.0)  # an update is waiting: no wait at all
    assert time.monotonic() - started < 10.0
    assert [task.id for task in broker.take_updates()[0]] == [1]


def test_leave_returns_the_nodes_leases_to_the_queue(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 2)
    broker.join("n1", {})
    broker.lease_batch("n1", 2, wait=0)

    broker.leave("n1")

    reply = broker.lease_batch("n2", 5, wait=0)
    assert sorted(task_id for task_id, _ in reply["tasks"]) == [1, 2]


def test_maintain_declares_silent_nodes_lost_and_requeues_their_leases(clock: FakeClock) -> None:
    broker = make_broker(clock, node_timeout=12.0)
    add_urls(broker, 2)
    broker.join("quiet", {})
    broker.join("chatty", {})
    assert len(broker.lease_batch("quiet", 2, wait=0)["tasks"]) == 2
    broker.take_updates()

    clock.advance(8)
    broker.extend_leases("chatty", [])
    clock.advance(8)
    broker.maintain()

    assert broker.take_updates() == ([], [("node_lost", {"node": "quiet"})])
    assert broker.counts()["nodes"] == 1
    reply = broker.lease_batch("chatty", 5, wait=0)
    assert sorted(task_id for task_id, _ in reply["tasks"]) == [1, 2]
    assert broker.board.tasks[1].attempts == 2


def test_maintain_does_not_lose_a_node_that_keeps_talking(clock: FakeClock) -> None:
    broker = make_broker(clock, node_timeout=12.0)
    broker.join("n1", {})
    broker.take_updates()

    for _ in range(5):
        clock.advance(10)
        broker.extend_leases("n1", [])
        broker.maintain()

    assert broker.take_updates() == ([], [])
    assert broker.counts()["nodes"] == 1


def test_maintain_reports_tasks_that_lost_too_many_leases(clock: FakeClock) -> None:
    broker = make_broker(clock, max_attempts=1, node_timeout=LEASE * 100)
    add_urls(broker, 1)
    broker.join("n1", {})
    for _ in range(MAX_LOST_LEASES):
        broker.lease_batch("n1", 1, wait=0)
        clock.advance(LEASE + 1)
        broker.maintain()
    finished, events = broker.take_updates()

    assert [(task.id, task.state) for task in finished] == [(1, "failed")]
    assert finished[0].result is not None
    assert finished[0].result.error == "lease_expired"
    assert events == [("node_joined", {"node": "n1"})]
    assert broker.all_final()


def test_lease_without_work_returns_empty_when_the_wait_ends(clock: FakeClock) -> None:
    broker = make_broker(clock)

    assert broker.lease_batch("n1", 5, wait=0.05) == {"tasks": [], "done": False}


def wait_until_node_is_waiting(broker: Broker, node: str) -> None:
    """The leasing thread registers the node under the lock and releases the lock only by
    waiting; once the node is visible from here, the thread is inside its wait."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while broker.counts()["nodes"] == 0:
        assert time.monotonic() < deadline, f"{node} never started leasing"
        time.sleep(0.005)


def lease_in_thread(broker: Broker, node: str, wait: float) -> tuple[threading.Thread, list]:
    replies: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: replies.append(broker.lease_batch(node, 5, wait=wait)), daemon=True
    )
    thread.start()
    wait_until_node_is_waiting(broker, node)
    return thread, replies


@pytest.fixture
def long_waits(monkeypatch: pytest.MonkeyPatch) -> float:
    """A lease wait far longer than the test's join timeout: returning within the
    timeout proves the waiter was woken, not that its wait ran out."""
    monkeypatch.setattr(broker_module, "MAX_LEASE_WAIT", 60.0)
    return 60.0


def test_waiting_lease_returns_as_soon_as_tasks_are_added(
    clock: FakeClock, long_waits: float
) -> None:
    broker = make_broker(clock)
    thread, replies = lease_in_thread(broker, "n1", wait=long_waits)

    add_urls(broker, 2)
    thread.join(JOIN_TIMEOUT)

    if thread.is_alive():
        broker.close()  # release the waiter before failing
    assert not thread.is_alive(), "the waiting lease was not woken by add_tasks"
    assert replies == [
        {"tasks": [[1, "http://a.test/0.png"], [2, "http://a.test/1.png"]], "done": False}
    ]


def test_close_wakes_a_waiting_lease_with_done(clock: FakeClock, long_waits: float) -> None:
    broker = make_broker(clock)
    thread, replies = lease_in_thread(broker, "n1", wait=long_waits)

    broker.close()
    thread.join(JOIN_TIMEOUT)

    assert not thread.is_alive(), "close did not wake the waiting lease"
    assert replies == [{"tasks": [], "done": True}]


def test_lease_after_close_answers_done(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 1)

    broker.close()

    assert broker.lease_batch("n1", 5, wait=1.0) == {"tasks": [], "done": True}


# -- faults of a node's own side: never an attempt, never final -----------------------


def handed_back(task_id: int, local: str = "storage", error: str = "store_error: full") -> Result:
    return replace(failure(task_id, retryable=True, error=error), local=local)


def test_a_task_handed_back_for_a_nodes_own_fault_keeps_its_attempts() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=2)
    for round_number in range(5):  # far more hand-backs than max_attempts
        now = T0 + round_number
        assert leased_ids(board.lease("n1", 1, now)) == [1]
        assert board.complete("n1", handed_back(1), now, 0.5) is None
        assert board.tasks[1].state == "pending"
        assert board.tasks[1].failures == 0
    assert board.politeness.state("a.test").down_errors == 0  # not the host's fault
    assert leased_ids(board.lease("n2", 1, T0 + 5)) == [1]  # due at once, for anyone
    task = board.complete("n2", stored(1, bytes=10), T0 + 5, 0.5)
    assert task is not None
    record = final_record(task)
    assert (record.outcome, record.attempts, record.leases) == ("stored", 1, 6)


def test_a_late_hand_back_after_the_lease_moved_on_changes_nothing() -> None:
    board = board_with(["http://a.test/1.png"])
    board.lease("n1", 1, T0)
    board.expire(T0 + LEASE + 1)
    board.lease("n2", 1, T0 + LEASE + 1)
    assert board.complete("n1", handed_back(1), T0 + LEASE + 2, 0.5) is None
    assert board.tasks[1].owner == "n2"


def test_an_exception_on_every_node_ends_a_task_after_the_lost_lease_limit() -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=3)
    finished = None
    for round_number in range(MAX_LOST_LEASES):
        now = T0 + round_number
        board.lease(f"n{round_number}", 1, now)
        finished = board.complete(f"n{round_number}", handed_back(1, "error"), now, 0.5)
    assert finished is not None and finished.state == "failed"
    # A storage fault, by contrast, is never final however often it happens.
    board = board_with(["http://a.test/1.png"], max_attempts=3)
    for round_number in range(3 * MAX_LOST_LEASES):
        board.lease("n1", 1, T0 + round_number)
        assert board.complete("n1", handed_back(1), T0 + round_number, 0.5) is None


@pytest.mark.parametrize(
    ("results", "attempts"),
    [
        ([stored(1)], 1),
        ([failure(1, retryable=True), stored(1)], 2),
        ([failure(1, retryable=False, error="http_404")], 1),
        ([failure(1, retryable=True), failure(1, retryable=True), failure(1, True)], 3),
    ],
)
def test_counted_attempts_never_exceed_max_attempts(results: list, attempts: int) -> None:
    board = board_with(["http://a.test/1.png"], max_attempts=3)
    now, task = T0, None
    for number, result in enumerate(results):
        board.expire(now)
        board.lease("lost", 1, now)  # a lease lost with its node before each try
        now += LEASE + 1
        board.expire(now)
        assert leased_ids(board.lease("n1", 1, now)) == [1], number
        task = board.complete("n1", result, now, 0.5)
        now = (board.next_due() or now) + 1
    assert task is not None
    record = final_record(task)
    assert record.attempts == attempts <= 3
    assert record.leases == 2 * len(results)


def test_a_node_failing_on_its_own_side_is_paused_said_and_welcomed_back(
    clock: FakeClock,
) -> None:
    broker = make_broker(clock)
    add_urls(broker, 4)
    broker.join("sick", {})
    broker.join("well", {})
    tasks = broker.lease_batch("sick", 2, 0)["tasks"]
    broker.report_results("sick", [handed_back(task[0]).to_wire() for task in tasks])

    _, events = broker.take_updates()
    failing = [fields for name, fields in events if name == "node_failing"]
    assert failing == [
        {"node": "sick", "error": "store_error: full", "handed_back": 2, "paused": 5.0}
    ]
    assert broker.lease_batch("sick", 4, 0)["tasks"] == []  # paused
    status = {n["node"]: n for n in broker.status()["nodes"]}
    assert status["sick"]["fault"] == "store_error: full"
    assert (status["sick"]["handed_back"], status["sick"]["paused_s"]) == (2, 5.0)
    # The healthy node gets all the work, the handed-back tasks included.
    assert len(broker.lease_batch("well", 4, 0)["tasks"]) == 4
    assert broker.counts()["failed"] == 0

    clock.advance(5.1)
    add_urls(broker, 5)  # one more task (URLs 0-3 are known)
    (task,) = broker.lease_batch("sick", 4, 0)["tasks"]
    broker.report_results("sick", [stored(task[0], bytes=1).to_wire()])
    _, events = broker.take_updates()
    assert ("node_recovered", {"node": "sick"}) in events
    assert {n["node"]: n for n in broker.status()["nodes"]}["sick"]["fault"] is None


def test_a_node_that_keeps_failing_is_paused_longer_each_time() -> None:
    pauses = [broker_module.node_pause(runs) for runs in range(1, 7)]
    assert pauses == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_join_tells_nodes_the_crawls_address_policy(clock: FakeClock) -> None:
    policy = AddressPolicyRecord(allow_private=True, allow_networks=("10.0.0.0/8",))
    broker = Broker(LEASE, 3, 12.0, clock=clock, address_policy=policy)
    wire = {"allow_private": True, "allow_networks": ["10.0.0.0/8"]}
    assert broker.join("n1", {})["address_policy"] == wire


def test_hand_backs_during_a_pause_do_not_lengthen_it(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 4)
    tasks = broker.lease_batch("sick", 4, 0)["tasks"]
    broker.report_results("sick", [handed_back(tasks[0][0]).to_wire()])
    clock.advance(1)
    broker.report_results("sick", [handed_back(task[0]).to_wire() for task in tasks[1:]])
    status = {n["node"]: n for n in broker.status()["nodes"]}["sick"]
    assert (status["handed_back"], status["paused_s"]) == (4, 4.0)
    _, events = broker.take_updates()
    assert [name for name, _ in events].count("node_failing") == 1


# -- page slots for the harvester's own fetches -----------------------------------


def test_page_slots_are_granted_in_turn_up_to_the_limit_and_the_host_limits() -> None:
    politeness = Politeness.from_config(PolitenessConfig(host_concurrency=2))
    broker = Broker(LEASE, 3, 12.0, clock=lambda: T0, politeness=politeness)
    hosts = ["a.test", "a.test", "a.test", "b.test", "c.test", "d.test"]

    slots = broker.take_page_slots(hosts, limit=3)

    # a.test holds two at most; then b.test takes the third grant, and the limit is met.
    assert [granted for granted, _ in slots] == [True, True, False, True, False, False]
    assert broker.take_page_slots(["a.test"], 1) == [(False, None)]
    broker.release_page_slots([("a.test", 200, None)])
    assert broker.take_page_slots(["a.test"], 1)[0][0] is True


def test_released_page_slots_feed_the_backoff() -> None:
    politeness = Politeness.from_config(PolitenessConfig(host_concurrency=4))
    broker = Broker(LEASE, 3, 12.0, clock=lambda: T0, politeness=politeness)
    assert all(granted for granted, _ in broker.take_page_slots(["a.test"] * 2, 2))

    broker.release_page_slots([("a.test", 503, "http_503"), ("a.test", 503, "http_503")])

    assert politeness.state("a.test").in_flight == 0
    assert politeness.state("a.test").throttled == 2


# -- what the metrics read: counters, per-host table, figures ------------------------


def test_the_board_counts_retries_and_leases_taken_back_by_reason() -> None:
    board = board_with([f"http://a.test/{i}.png" for i in range(4)], max_attempts=3)
    first, second, third, fourth = board.lease("n1", 4, T0)
    board.complete("n1", failure(first.id, retryable=True), T0, 0.5)  # tried again
    board.complete("n1", failure(second.id, retryable=False), T0, 0.5)  # final: no retry
    third_deadline = board.leases[third.id].deadline
    board.extend("n1", [fourth.id], third_deadline)
    board.expire(third_deadline + 1)  # the third's lease ran out; the fourth was extended
    assert board.counters.retries == 1
    assert board.counters.taken_back == {"lease_expired": 1}
    board.release_node("n1", T0)
    assert board.counters.taken_back == {"lease_expired": 1, "node_lost": 1}


def test_the_host_table_follows_every_state_and_reads_final_ones_once() -> None:
    board = TaskBoard(lease_seconds=LEASE, max_attempts=1)
    for url in ("http://a.test/1.png", "http://a.test/2.png", "http://a.test/3.png"):
        board.add(url, "http://a.test/", "img")
    board.add("http://b.test:81/1.png", "http://a.test/", "img")
    board.add_refused("http://c.test/x.png", "http://a.test/", "img", "robots_disallowed")
    one, two = board.lease("n1", 2, T0)  # both of a.test, the first host
    board.complete("n1", stored(one.id), T0, 0.5)
    assert board.host_table() == {
        "a.test": {"waiting": 1, "leased": 1, "stored": 1},
        "b.test:81": {"waiting": 1},
        "c.test": {"failed": 1},
    }
    # From here on the table is counted as tasks become final, not read again.
    board.db.execute("UPDATE tasks SET host = 'elsewhere'")
    board.complete("n1", failure(two.id, retryable=False), T0, 0.5)
    assert board.host_table() == {
        "a.test": {"waiting": 1, "stored": 1, "failed": 1},
        "b.test:81": {"waiting": 1},
        "c.test": {"failed": 1},
    }


def test_the_host_table_of_a_resumed_board_comes_from_the_database() -> None:
    board = board_with(["http://a.test/1.png", "http://a.test/2.png"], max_attempts=1)
    first, second = board.lease("n1", 2, T0)
    board.complete("n1", stored(first.id), T0, 0.5)
    board.complete("n1", failure(second.id, retryable=False), T0, 0.5)
    resumed = TaskBoard(lease_seconds=LEASE, max_attempts=1, db=board.db)
    assert resumed.host_table() == {"a.test": {"stored": 1, "failed": 1}}


def test_tasks_keep_the_time_they_were_queued(clock: FakeClock) -> None:
    broker = make_broker(clock)
    before = time.time()
    (task,), _ = broker.add_tasks([("http://a.test/1.png", "http://a.test/", "img")])
    after = time.time()
    assert before <= task.queued_at <= after
    broker.join("n1", {})
    (leased,) = broker.board.lease("n1", 1, clock())
    assert leased.queued_at == task.queued_at  # read back from the database


def test_figures_are_the_queue_nodes_and_hosts_now(clock: FakeClock) -> None:
    broker = make_broker(clock)
    add_urls(broker, 5)
    broker.join("n1", {})
    broker.join("n2", {})
    leased = [task.id for task in LeaseReply.from_wire(broker.lease_batch("n1", 3, wait=0)).tasks]
    broker.report_results("n1", [{"id": leased[0], "outcome": "stored", "bytes": 10}])
    broker.report_results(
        "n1",
        [
            {
                "id": leased[1],
                "outcome": "failed",
                "status": 503,
                "error": "http_503",
                "retryable": True,
            }
        ],
    )
    figures = broker.figures()
    assert figures.tasks == {"waiting": 3, "leased": 1, "stored": 1, "failed": 0}
    assert figures.nodes == 2 and figures.nodes_paused == 0 and not figures.closed
    assert figures.node_tasks == {
        "n1": {"leased": 1, "stored": 1, "failed": 0},
        "n2": {"leased": 0, "stored": 0, "failed": 0},
    }
    assert figures.host_tasks == {"a.test": {"waiting": 3, "leased": 1, "stored": 1}}
    # The 503 slows the host down and pauses it for a while.
    assert figures.hosts == {"busy": 1, "throttled": 1, "paused": 1, "down": 0}
    assert figures.counters.retries == 1
    # A copy: what the board counts later does not change figures already taken.
    broker.maintain()
    clock.advance(LEASE + 1)
    broker.maintain()
    assert figures.counters.taken_back == {} and broker.figures().counters.taken_back


@pytest.mark.parametrize(
    ("policy", "referer"),
    [("page", "https://a.test/gallery.html"), ("origin", "https://a.test/"), ("none", None)],
)
def test_a_lease_carries_the_referer_of_the_crawls_policy(clock: FakeClock, policy, referer):
    broker = Broker(LEASE, 3, 12.0, clock=clock, referer=policy)
    broker.add_tasks([("https://cdn.test/1.png", "https://a.test/gallery.html#top", "img_src")])
    broker.add_tasks([("http://cdn.test/2.png", "https://a.test/gallery.html", "img_src")])
    broker.join("n1", {})
    tasks = LeaseReply.from_wire(broker.lease_batch("n1", 5, wait=0)).tasks
    by_url = {task.url: task.referer for task in tasks}
    assert by_url == {"https://cdn.test/1.png": referer, "http://cdn.test/2.png": None}
