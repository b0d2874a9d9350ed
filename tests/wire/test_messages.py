"""Tests for the checks of a peer's requests (``wire/messages.py``): properties over any
bytes and any JSON, the requests our own clients send, and a real server that a peer
with the key sends bad requests to while a node keeps working."""

from __future__ import annotations

import contextlib
import json
from multiprocessing.connection import Client
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.broker.broker import Broker
from crawler.wire.base import RecordClient
from crawler.wire.manager_client import ManagerWire
from crawler.wire.manager_server import BrokerServer, ServerLimits
from crawler.wire.messages import (
    BadMessage,
    RequestChecker,
    check_call,
    check_first_request,
    decode_request,
)
from tests.wire.test_manager_client import KEY, call_within
from tests.wire.test_tls import stored_result

# JSON data of every shape: huge and negative integers, floats, long and odd strings,
# nesting deeper than the checks allow.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.text(min_size=300, max_size=2000)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=40,
)
methods = st.sampled_from(
    [
        "join",
        "lease_batch",
        "extend_leases",
        "report_results",
        "leave",
        "status",
        "shutdown",
        "create",
        "dummy",
        "accept_connection",
        "incref",
        "decref",
        "__repr__",
        "#GETVALUE",
    ]
)
requests = st.tuples(
    st.none() | st.text(max_size=20) | json_values,
    methods | json_values,
    st.lists(json_values, max_size=5) | json_values,
    st.just({}) | json_values,
).map(list)


def check_all(data: bytes, first: bool) -> list[Any] | None:
    """None for a refused request; the request otherwise. Anything but BadMessage fails."""
    try:
        request = decode_request(data)
        (check_first_request if first else check_call)(request)
    except BadMessage as exc:
        assert str(exc) and len(str(exc)) < 200
        return None
    return request


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_bad_message(data: bytes) -> None:
    check_all(data, first=True)
    check_all(data, first=False)


@given(json_values)
def test_any_json_is_a_request_or_a_bad_message(value: Any) -> None:
    data = json.dumps(value).encode()
    check_all(data, first=True)
    check_all(data, first=False)


@given(requests, st.booleans())
def test_requests_of_any_shape_pass_only_with_the_types_the_broker_takes(
    request: list[Any], first: bool
) -> None:
    passed = check_all(json.dumps(request).encode(), first)
    if passed is None:
        return
    _ident, method, args, kwds = passed
    assert kwds == {} and isinstance(args, list)
    assert method in (
        ("dummy", "create", "accept_connection", "incref", "decref")
        if first
        else ("join", "lease_batch", "extend_leases", "report_results", "leave", "status")
    )
    if method in ("join", "lease_batch", "extend_leases", "report_results", "leave"):
        assert isinstance(args[0], str) and args[0]
    if method == "lease_batch":
        assert type(args[1]) is int and args[1] >= 0
    if method == "join":
        assert all(not isinstance(v, list | dict) for v in args[1].values())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b'[null, "dummy", [NaN], {}]', "not JSON data (NaN)"),
        (b'[null, "dummy", [Infinity], {}]', "not JSON data (Infinity)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (json.dumps([[[[[[[[[[1]]]]]]]]]]).encode(), "not a request"),
        (b'{"a": 1}', "not a request"),
        (b'[null, "dummy", [], {"x": 1}]', "keyword arguments are not taken"),
    ],
)
def test_what_is_no_request(data: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_request(data)


@pytest.mark.parametrize(
    ("request_", "first", "reason"),
    [
        ([None, "shutdown", [], {}], True, "not a method a connection may start with"),
        ([None, "create", ["get_anything"], {}], True, "no such queue"),
        (["7f", "join", [["a"], {}], {}], False, "node: a string"),
        (["7f", "join", ["n", {"pid": [1]}], {}], False, r"info\[pid\]"),
        (["7f", "join", ["n", {"pid": 2**70}], {}], False, r"info\[pid\]"),
        (["7f", "lease_batch", ["n", "10", 1.0], {}], False, "limit"),
        (["7f", "lease_batch", ["n", 10**9, 1.0], {}], False, "limit"),
        (["7f", "lease_batch", ["n", 10, "1"], {}], False, "wait"),
        (["7f", "extend_leases", ["n", [1, -2]], {}], False, "ids"),
        (["7f", "report_results", ["n", [{"id": {"a": 1}}]], {}], False, "plain values"),
        (["7f", "report_results", ["n", [{"id": [[[[[1]]]]]}]], {}], False, "plain values"),
        (["7f", "report_results", ["n", [1, 2]], {}], False, "results: objects expected"),
        (["7f", "report_results", ["n", "x"], {}], False, "results"),
        (["7f", "leave", [], {}], False, "1 arguments expected"),
        (["7f", "__repr__", [], {}], False, "no such call"),
        (["7f", "join", ["", {}], {}], False, "node: empty"),
    ],
)
def test_wrong_calls_are_refused(request_: list[Any], first: bool, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        (check_first_request if first else check_call)(request_)


def test_real_requests_pass() -> None:
    report = ["7f", "report_results", ["n", [{"id": 1, "url": "http://a/b.png", "x": None}]], {}]
    assert decode_request(json.dumps(report).encode()) == report
    check_call(report)
    check_call(["7f", "extend_leases", ["n", []], {}])
    check_call(["7f", "lease_batch", ["n", 64, 1.0], {}])
    check_first_request([None, "accept_connection", ["MainProcess|Dummy-1"], {}])


# -- a real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Any:
    broker = Broker(lease_seconds=60.0, max_attempts=3, node_timeout=30.0)
    events: list[tuple[str, dict]] = []
    broker.note_event = lambda name, fields: events.append((name, fields))  # type: ignore[method-assign]
    limits = ServerLimits(handshake_timeout=2.0, max_connections=64, event_interval=0.0)
    server = BrokerServer(broker, ("127.0.0.1", 0), KEY, limits)
    server.start()
    node = RecordClient(call_within(5, ManagerWire, server.address, KEY))
    call_within(5, node.join, "steady", {"pid": 1})
    yield server, broker, node, events
    node.close()
    server.stop()


def session(server: BrokerServer) -> Any:
    """A connection with the key, past accept_connection: in the per-client loop."""
    raw = call_within(5, lambda: Client(server.address, authkey=KEY))
    raw.send_bytes(json.dumps([None, "accept_connection", ["probe"], {}]).encode())
    assert raw.poll(5) and b"#RETURN" in raw.recv_bytes()
    return raw


def closed_by_server(raw: Any) -> bool:
    assert raw.poll(5), "the server neither answered nor closed"
    try:
        raw.recv_bytes()
    except EOFError:
        return True
    return False


def assert_the_node_is_served(broker: Broker, node: RecordClient, url: str) -> None:
    broker.add_tasks([(url, "http://site.test/", "img")])
    (task,) = call_within(5, node.lease_batch, "steady", 10, 0).tasks
    result = stored_result(task.id, task.url, "steady", "x.png")
    assert call_within(5, node.report_results, "steady", [result]) == 1


def test_a_bad_request_closes_that_connection_with_a_log_line_and_others_go_on(live) -> None:
    server, broker, node, events = live
    raw = session(server)
    raw.send_bytes(json.dumps(["7f", "lease_batch", ["steady", "all of them", 1.0], {}]).encode())
    assert closed_by_server(raw)
    raw.close()
    assert ("bad_message", "limit") in [(n, f["reason"].split(":")[0]) for n, f in events]
    assert_the_node_is_served(broker, node, "http://site.test/after-bad.png")
    assert call_within(5, node.status)["queue"]["nodes"] == 1


def test_a_join_with_odd_info_cannot_break_status_for_everyone(live) -> None:
    server, _broker, node, _events = live
    # The task queue's ident, found as a proxy finds it.
    probe = call_within(5, lambda: Client(server.address, authkey=KEY))
    probe.send_bytes(json.dumps([None, "create", ["get_task_queue"], {}]).encode())
    assert probe.poll(5)
    kind, (ident, _exposed) = json.loads(probe.recv_bytes())
    assert kind == "#RETURN"
    probe.close()
    raw = session(server)
    raw.send_bytes(
        json.dumps([ident, "join", ["odd", {"pid": "abc", "concurrency": 1.5}], {}]).encode()
    )
    assert raw.poll(5) and b"#RETURN" in raw.recv_bytes()
    raw.close()
    status = call_within(5, node.status)
    odd = next(n for n in status["nodes"] if n["node"] == "odd")
    assert odd["pid"] == 0 and odd["concurrency"] == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests)
def test_whatever_a_peer_sends_in_session_the_server_keeps_serving(live, request) -> None:
    server, _broker, node, _events = live
    raw = session(server)
    try:
        raw.send_bytes(json.dumps(request).encode())
        answered = raw.poll(5)
        assert answered, "the server neither answered nor closed"
        with contextlib.suppress(EOFError):
            raw.recv_bytes()
    finally:
        raw.close()
    # Everyone else is still served, right after.
    assert call_within(5, node.extend_leases, "steady", []) is None
    assert call_within(5, node.status)["queue"]["nodes"] >= 1


def test_checker_reports_the_reason_before_raising() -> None:
    reasons: list[str] = []
    checker = RequestChecker(reasons.append)
    assert (
        checker(json.dumps([None, "accept_connection", ["x"], {}]).encode())[1]
        == "accept_connection"
    )
    with pytest.raises(BadMessage):
        checker(b'[null, "accept_connection", ["x"], {}]')  # not a call after the first
    assert reasons == ["accept_connection: no such call"]
