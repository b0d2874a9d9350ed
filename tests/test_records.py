"""The records' wire forms: a round trip keeps every value; a peer's data never breaks."""

from __future__ import annotations

import json

import pytest

from crawler.records import (
    FAILED,
    LOCAL_ERROR,
    LOCAL_STORAGE,
    STORED,
    AddressPolicyRecord,
    JoinReply,
    LeasedTask,
    LeaseReply,
    ManifestRecord,
    Result,
)

FULL = Result(
    7,
    "http://img.test/ü.png",
    "node-1",
    STORED,
    200,
    1234,
    "ab" * 32,
    "image/png",
    "image/png",
    "img.test/ab/x.png",
    640,
    480,
    None,
    False,
    None,
    0.25,
    None,
)


def across(data: object) -> object:
    return json.loads(json.dumps(data))


def test_a_result_round_trips_through_json() -> None:
    assert Result.from_wire(across(FULL.to_wire())) == FULL
    handed_back = Result(3, "http://x.test/a", error="store_error: full", local=LOCAL_STORAGE)
    assert Result.from_wire(across(handed_back.to_wire())) == handed_back


def test_the_address_a_node_refused_never_leaves_it() -> None:
    result = Result(1, "http://10.0.0.1/a.png", peer="10.0.0.1")
    assert "peer" not in result.to_wire()


@pytest.mark.parametrize(
    "data",
    [None, [], "x", 3, {}, {"id": "7"}, {"id": True}, {"id": 2**64}, {"url": "http://a/"}],
)
def test_what_names_no_task_is_not_a_result(data: object) -> None:
    assert Result.from_wire(data) is None


def test_fields_of_the_wrong_type_read_as_absent() -> None:
    hostile = {
        "id": 5,
        "url": ["not", "text"],
        "outcome": "stored!",
        "status": "200",
        "bytes": 1.5,
        "width": float("nan"),
        "retryable": 1,
        "retry_after": float("inf"),
        "elapsed": "fast",
        "error": "x" * 10_000,
        "local": "something else",
    }
    result = Result.from_wire(hostile)
    assert result is not None
    assert (result.url, result.outcome, result.status, result.bytes, result.width) == (
        "",
        FAILED,
        None,
        None,
        None,
    )
    assert (result.retryable, result.retry_after, result.elapsed) == (False, None, None)
    assert len(result.error or "") == 4096
    assert result.local == LOCAL_ERROR  # an unknown fault of the node is still its fault


def test_a_manifest_record_round_trips_and_needs_a_url() -> None:
    record = ManifestRecord("http://img.test/a.png", "http://site.test/", "img_src", STORED, 200)
    assert ManifestRecord.from_wire(across(record.to_wire())) == record
    assert ManifestRecord.from_wire({"page": "http://site.test/"}) is None


def test_leases_and_joins_round_trip_and_tolerate_junk() -> None:
    timed = LeasedTask(3, "http://a.test/x.png", 1.5, 2.0)
    reply = LeaseReply([LeasedTask(1, "http://a.test/y.png"), timed], done=False)
    assert LeaseReply.from_wire(across(reply.to_wire())) == LeaseReply(list(reply.tasks))
    assert across(timed.to_wire()) == [3, "http://a.test/x.png", 1.5, 2.0]
    junk = {"tasks": [[1], ["2", "u"], [4, "http://a.test/z.png", "soon"]], "done": "yes"}
    assert LeaseReply.from_wire(junk) == LeaseReply([LeasedTask(4, "http://a.test/z.png")])

    policy = AddressPolicyRecord(True, ("10.0.0.0/8",))
    join = JoinReply(60.0, 10.0, "bot/1", policy)
    assert JoinReply.from_wire(across(join.to_wire())) == join
    assert JoinReply.from_wire(None) == JoinReply(0.0, 10.0)


def test_a_leased_task_carries_its_referer_and_older_forms_still_read():
    plain = LeasedTask(1, "http://a.test/x.png")
    referred = LeasedTask(2, "http://a.test/y.png", referer="http://a.test/page.html")
    timed = LeasedTask(3, "http://a.test/z.png", 1.5, 2.0, "http://a.test/")
    for task in (plain, referred, timed):
        assert LeasedTask.from_wire(json.loads(json.dumps(task.to_wire()))) == task
    assert referred.to_wire() == [2, "http://a.test/y.png", None, 0.0, "http://a.test/page.html"]
    assert LeasedTask.from_wire([3, "http://a.test/z.png", 1.5, 2.0]) == LeasedTask(
        3, "http://a.test/z.png", 1.5, 2.0
    )
    assert LeasedTask.from_wire([4, "http://a.test/w.png", None, 0.0, 7]).referer is None
