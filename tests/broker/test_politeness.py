"""Tests for crawler.broker.politeness, and the task board leasing under its limits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crawler.broker.board import TaskBoard
from crawler.broker.politeness import (
    LOOKAHEAD,
    MIN_PENALTY,
    HostRule,
    Politeness,
    is_throttle,
    is_unreachable,
    parse_host_rule,
)
from crawler.config import PolitenessConfig
from crawler.errors import ConfigError
from crawler.records import Result
from crawler.web.retries import MAX_DOWN_PAUSE

A, B, C = "a.test", "b.test:8080", "c.test"
T0 = 1000.0
OK = Result(0, "", status=200, outcome="stored")
THROTTLED = Result(0, "", status=429, retry_after=2.0, retryable=True)
DOWN = Result(0, "", status=None, error="connection_error: refused", retryable=True)


def politeness(**settings: Any) -> Politeness:
    """A policy built from ``[politeness]`` settings (the config's defaults for the rest)."""
    return Politeness.from_config(PolitenessConfig(**settings), lookahead=1.0)


def take(policy: Politeness, host: str, now: float, count: int) -> list[float | None]:
    """Grant ``count`` requests, checking ``room`` first as the board does."""
    starts = []
    for _ in range(count):
        assert policy.room(host, now) > 0
        starts.append(policy.grant(host, now))
    return starts


def test_parse_host_rule():
    assert parse_host_rule("*.a.test concurrency=2 delay=1.5") == HostRule("*.a.test", 2, 1.5)
    assert parse_host_rule("  b.test   delay = 0.25 ") == HostRule("b.test", None, 0.25)
    assert parse_host_rule("c.test") == HostRule("c.test")
    for bad in ("", "a concurrency=0", "a concurrency=2.5", "a delay=-1", "a rate=3"):
        with pytest.raises(ConfigError, match="host_limits"):
            parse_host_rule(bad)


def test_result_classes():
    assert is_throttle(THROTTLED) and is_throttle(Result(0, "", status=503))
    assert not is_throttle(Result(0, "", status=500))
    assert is_unreachable(DOWN) and is_unreachable(Result(0, "", status=None, error="timeout: x"))
    assert not is_unreachable(Result(0, "", status=500, error="http_500"))
    assert not is_unreachable(Result(0, "", status=None, error="blocked_address: 10.0.0.1"))
    tls = "tls_error: certificate verify failed: self-signed certificate"
    assert not is_unreachable(Result(0, "", status=None, error=tls)), "a TLS failure is an answer"
    assert not is_unreachable(Result(0, "", status=None, error="bad_response: bad status line 'x'"))


def test_built_from_the_politeness_settings():
    settings = PolitenessConfig(
        host_concurrency=3,
        host_delay=0.5,
        host_limits=("x.test concurrency=1",),
        host_down_timeout=60.0,
    )
    policy = Politeness.from_config(settings)
    assert (policy.concurrency, policy.delay, policy.down_timeout) == (3, 0.5, 60.0)
    assert policy.rules == (HostRule("x.test", 1),)
    assert policy.lookahead == LOOKAHEAD and policy.hosts == {}
    defaults = Politeness.from_config(PolitenessConfig())
    assert defaults.limits(A) == (8, 0.0), "the config's defaults, none of its own"


def test_concurrency_is_per_host_and_freed_by_release():
    policy = politeness(host_concurrency=2)
    assert take(policy, A, T0, 2) == [None, None]  # no delay: start at once, untimed
    assert policy.room(A, T0) == 0
    assert policy.room(B, T0) == 2, "another host is not held up"
    policy.release(A)
    assert policy.room(A, T0) == 1


def test_rules_first_match_wins_and_fill_in_defaults():
    policy = politeness(
        host_concurrency=8,
        host_delay=0.0,
        host_limits=("*.a.test concurrency=1", "x.a.test concurrency=5 delay=2.0"),
    )
    assert policy.limits("x.a.test") == (1, 0.0)
    assert policy.limits("a.test") == (1, 0.0)
    assert policy.limits(C) == (8, 0.0)


def test_delay_spaces_start_times_within_the_lookahead():
    policy = politeness(host_concurrency=8, host_delay=0.4)
    assert policy.room(A, T0) == 3  # starts at +0, +0.4, +0.8 fit in one second
    assert take(policy, A, T0, 3) == [0.0, 0.4, 0.8]
    assert policy.room(A, T0) == 0
    assert policy.room(A, T0 + 0.3) == 1
    assert policy.grant(A, T0 + 0.3) == pytest.approx(0.9)


def test_crawl_delay_raises_the_delay_and_is_capped():
    policy = politeness(host_delay=0.1)
    policy.set_crawl_delay(A, 2.0)
    assert policy.limits(A) == (8, 2.0)
    policy.set_crawl_delay(B, 0.01)
    assert policy.limits(B) == (8, 0.1), "the configured delay is the floor"
    policy.set_crawl_delay(C, 86400)
    assert policy.limits(C)[1] == 60.0


def test_throttle_pauses_the_host_for_retry_after_and_adds_a_decaying_penalty():
    policy = politeness(host_concurrency=4)
    take(policy, A, T0, 1)
    policy.release(A)
    assert policy.feedback(A, THROTTLED, T0) is False, "a 429 counts as an attempt"
    assert policy.room(A, T0 + 0.5) == 0 and policy.room(B, T0 + 0.5) == 4
    assert policy.room(A, T0 + 1.5) > 0  # within the lookahead of the end of the pause
    assert policy.grant(A, T0 + 1.5) == pytest.approx(0.5)
    assert policy.limits(A)[1] == MIN_PENALTY
    policy.feedback(A, THROTTLED, T0 + 3)
    assert policy.limits(A)[1] == 2 * MIN_PENALTY
    for step in range(20):
        policy.feedback(A, OK, T0 + 4 + step)
    assert policy.limits(A)[1] == 0.0, "the penalty goes away after successes"


def test_an_unreachable_host_is_paused_longer_each_time_and_spared_until_the_timeout():
    policy = politeness(host_down_timeout=600)
    assert policy.feedback(A, DOWN, T0) is False, "the first failure of a run counts"
    assert policy.hosts[A].paused_until == T0 + 1
    assert policy.feedback(A, DOWN, T0 + 1) is True
    assert policy.hosts[A].paused_until == T0 + 3
    pauses = []
    for n in range(2, 20):
        policy.feedback(A, DOWN, T0 + n)
        pauses.append(policy.hosts[A].paused_until - (T0 + n))
    assert max(pauses) == MAX_DOWN_PAUSE
    assert policy.feedback(A, DOWN, T0 + 599) is True
    assert policy.feedback(A, DOWN, T0 + 601) is False, "down too long: failures count"
    policy.feedback(A, OK, T0 + 700)
    assert policy.feedback(A, DOWN, T0 + 701) is False, "a success starts a new run"


def test_a_tls_failure_is_an_answer_and_does_not_pause_the_host():
    policy = politeness(host_down_timeout=600)
    tls = Result(0, "", error="tls_error: certificate verify failed: self-signed")
    for step in range(3):
        assert policy.feedback(A, tls, T0 + step) is False
    assert (policy.hosts[A].paused_until, policy.hosts[A].down_errors) == (0.0, 0)
    assert policy.room(A, T0 + 3) > 0
    policy.feedback(A, DOWN, T0 + 4)
    policy.feedback(A, tls, T0 + 5)
    assert policy.hosts[A].down_errors == 0, "an answer ends a run of unreachable ones"


def test_wake_time_is_when_a_delayed_or_paused_host_frees_up():
    policy = politeness(host_concurrency=1, host_delay=5.0)
    assert policy.wake_time([A], T0) is None
    policy.grant(A, T0)
    assert policy.wake_time([A], T0) is None, "full on concurrency: woken by a release"
    policy.release(A)
    assert policy.wake_time([A], T0) == T0 + 4.0


def test_snapshot_lists_busy_and_throttled_hosts():
    policy = politeness(host_concurrency=3)
    take(policy, A, T0, 2)
    policy.feedback(B, THROTTLED, T0)
    rows = {row["host"]: row for row in policy.snapshot(T0 + 1)}
    assert rows[A]["in_flight"] == 2 and rows[A]["limit"] == 3
    assert rows[B]["paused"] == 1.0 and rows[B]["throttled"] == 1
    assert C not in rows


# -- the task board under politeness limits ------------------------------------------


def board(policy: Politeness, urls: list[str]) -> TaskBoard:
    tasks = TaskBoard(lease_seconds=30, max_attempts=3, politeness=policy)
    tasks.add_many((url, "http://page.test/", "img_src") for url in urls)
    return tasks


def hosts_of(tasks) -> list[str]:
    return [task.url.split("/")[2] for task in tasks]


def test_leases_across_nodes_never_exceed_a_host_limit_and_hosts_take_turns():
    urls = [f"http://{host}/{n}.png" for host in (A, B) for n in range(10)]
    tasks = board(politeness(host_concurrency=3), urls)
    first = tasks.lease("n1", 4, T0)
    second = tasks.lease("n2", 10, T0)
    leased = hosts_of(first + second)
    assert leased.count(A) == 3 and leased.count(B) == 3
    assert set(hosts_of(first)) == {A, B}, "one host does not take the whole batch"
    assert tasks.lease("n3", 10, T0) == []
    tasks.complete(
        "n1", Result.from_wire({"id": first[0].id, "outcome": "stored", "status": 200}), T0, 0.0
    )
    again = tasks.lease("n3", 10, T0)
    assert hosts_of(again) == hosts_of(first[:1])


def test_taken_back_leases_free_their_host_slots():
    tasks = board(politeness(host_concurrency=2), [f"http://{A}/{n}.png" for n in range(5)])
    assert len(tasks.lease("n1", 5, T0)) == 2
    tasks.release_node("n1", T0 + 1)
    assert len(tasks.lease("n2", 5, T0 + 1)) == 2
    tasks.expire(T0 + 100)
    assert len(tasks.lease("n3", 5, T0 + 100)) == 2


def test_a_delayed_host_gets_start_times_and_others_are_not_timed():
    urls = [f"http://{A}/{n}.png" for n in range(4)] + [f"http://{C}/{n}.png" for n in range(2)]
    policy = politeness(host_concurrency=8, host_limits=(f"{A} delay=0.5",))
    leased = board(policy, urls).lease("n1", 10, T0)
    timing = {task.url: task.start_in for task in leased}
    assert sorted(t for u, t in timing.items() if A in u) == [0.0, 0.5, 1.0]
    assert [t for u, t in timing.items() if C in u] == [None, None]


def test_tasks_of_a_host_that_is_down_keep_their_attempts():
    tasks = board(politeness(host_concurrency=8), [f"http://{A}/{n}.png" for n in range(3)])
    leased = tasks.lease("n1", 3, T0)
    for task in leased:
        tasks.complete("n1", replace(DOWN, id=task.id), T0, 0.0)
    failures = sorted(tasks.tasks[task.id].failures for task in leased)
    assert failures == [0, 0, 1], "only the first failure of the run counts"
    assert all(tasks.tasks[task.id].state == "pending" for task in leased)
    assert tasks.lease("n1", 3, T0 + 0.5) == [], "the host is paused"
    assert len(tasks.lease("n1", 3, T0 + 10)) == 3


def test_a_delayed_host_goes_to_one_node_at_a_time_and_restarts_a_delay_after_a_result():
    policy = politeness(host_concurrency=4, host_delay=0.5)
    assert policy.room(A, T0, "n1") == 3
    policy.grant(A, T0, "n1")
    assert policy.room(A, T0, "n2") == 0, "another node must wait for n1's requests"
    assert policy.room(A, T0, "n1") == 2
    policy.release(A, T0 + 3.0)  # the result came back at +3 s
    assert policy.hosts[A].owner is None
    assert policy.grant(A, T0 + 3.0, "n2") == pytest.approx(0.5)


def test_a_host_without_delay_is_shared_by_every_node():
    policy = politeness(host_concurrency=4)
    policy.grant(A, T0, "n1")
    assert policy.room(A, T0, "n2") == 3


def test_nodes_get_a_fair_share_of_a_host():
    policy = politeness(host_concurrency=8)
    assert policy.room(A, T0, "n1", nodes=2) == 4
    take(policy, A, T0, 4)  # granted to the default node ""
    for _ in range(4):
        policy.grant(A, T0, "n1")
    assert policy.room(A, T0, "n1", nodes=2) == 0, "n1 has its half"
    assert policy.room(A, T0, "n1", nodes=1) == 0, "the host is full"
    policy.release(A, T0, "")
    assert policy.room(A, T0, "n2", nodes=3) == 1
    assert policy.room(A, T0, "n1", nodes=1) == 1, "alone, a node may use the whole limit"


def test_board_shares_one_host_between_two_nodes():
    tasks = board(politeness(host_concurrency=8), [f"http://{A}/{n}.png" for n in range(20)])
    first = tasks.lease("n1", 16, T0, nodes=2)
    second = tasks.lease("n2", 16, T0, nodes=2)
    assert (len(first), len(second)) == (4, 4)
    tasks.complete(
        "n1", Result.from_wire({"id": first[0].id, "outcome": "stored", "status": 200}), T0, 0.0
    )
    assert len(tasks.lease("n2", 16, T0, nodes=2)) == 0, "n2 still holds its share"
    assert len(tasks.lease("n1", 16, T0, nodes=2)) == 1


def test_a_slot_is_kept_free_for_pages_waiting_on_the_host():
    policy = politeness(host_concurrency=4)
    assert policy.room(A, T0, "n1", reserve=1) == 3
    assert politeness(host_concurrency=1).room(A, T0, "n1", reserve=1) == 1, "1 stays shared"
    tasks = board(politeness(host_concurrency=4), [f"http://{A}/{n}.png" for n in range(10)])
    tasks.page_hosts = {A}
    assert len(tasks.lease("n1", 10, T0)) == 3
    assert tasks.politeness.room(A, T0, "(harvester pages)") == 1, "the page gets the last"
