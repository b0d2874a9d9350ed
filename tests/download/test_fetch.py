"""Tests for downloading one image: HTTP handling, checks and storage, with ``responses``."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import responses
from PIL import Image

from crawler.broker.politeness import Politeness
from crawler.config import Config, CrawlConfig, DownloadConfig, PolitenessConfig
from crawler.demo.server import serve as serve_files
from crawler.demo.site import generate_site
from crawler.download.fetch import (
    MAX_RETRY_AFTER,
    MEMORY_BODY_BYTES,
    FetchLimits,
    fetch_image,
    retry_after_seconds,
)
from crawler.records import Result
from crawler.storage import TMP_DIR
from crawler.web.safehttp import (
    CHUNK_BYTES,
    AddressPolicy,
    SessionOptions,
    make_session,
    open_url,
)
from tests.web.test_failures import self_signed, serve

__all__ = ["self_signed", "serve"]  # fixtures shared with test_failures

HOST = "http://images.example"
USER_AGENT = "ua"
DEFAULT_LIMITS = FetchLimits.from_config(Config())
LIMITS = replace(DEFAULT_LIMITS, connect_timeout=1.0, read_timeout=1.0, max_bytes=64 * 1024)
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'


def image_bytes(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


PNG = image_bytes("PNG", (7, 5))
JPEG = image_bytes("JPEG", (3, 2))


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def temporaries(out: Path) -> list[Path]:
    tmp = out / TMP_DIR
    return sorted(tmp.iterdir()) if tmp.exists() else []


def stored_files(out: Path) -> list[Path]:
    if not out.exists():
        return []
    return sorted(p for p in out.rglob("*") if p.is_file() and TMP_DIR not in p.parts)


def fetch(url: str, out: Path, limits: FetchLimits = LIMITS, task_id: int = 1) -> Result:
    """Fetch with a fresh pool session; whatever happened, no temporary file stays."""
    result = fetch_image(
        make_session(4, USER_AGENT, AddressPolicy()), task_id, url, out, "node-1", limits
    )
    assert temporaries(out) == []
    return result


def assert_failed(result: Result, out: Path, error: str, retryable: bool) -> None:
    assert (result.outcome, result.error, result.retryable) == ("failed", error, retryable)
    assert (result.path, result.sha256) == (None, None)
    assert stored_files(out) == []


def test_limits_are_built_from_the_config() -> None:
    download = DownloadConfig(
        connect_timeout=1.5,
        read_timeout=2.5,
        total_timeout=9.0,
        max_image_bytes=1000,
        min_width=4,
        min_height=5,
    )
    limits = FetchLimits.from_config(Config(crawl=CrawlConfig(max_redirects=3), download=download))
    assert limits == FetchLimits(
        connect_timeout=1.5,
        read_timeout=2.5,
        total_timeout=9.0,
        max_bytes=1000,
        max_redirects=3,
        min_width=4,
        min_height=5,
        agent="distributed-image-crawler",  # the default User-Agent's product token
    )


@pytest.mark.parametrize(
    ("body", "mime", "ext", "dimensions"),
    [(PNG, "image/png", "png", (7, 5)), (JPEG, "image/jpeg", "jpg", (3, 2))],
    ids=["png", "jpeg"],
)
@pytest.mark.parametrize("send_length", [True, False], ids=["with-length", "no-length"])
def test_stores_an_image_under_its_content_hash(
    mocked: responses.RequestsMock,
    out: Path,
    body: bytes,
    mime: str,
    ext: str,
    dimensions: tuple[int, int],
    send_length: bool,
) -> None:
    url = f"{HOST}/pics/photo.bin?size=large"
    # The server's Content-Type is wrong on purpose: the type comes from the bytes.
    mocked.get(
        url,
        body=body,
        content_type="application/octet-stream",
        auto_calculate_content_length=send_length,
    )
    sha = hashlib.sha256(body).hexdigest()

    result = fetch(url, out, task_id=42)

    assert result.outcome == "stored"
    assert (result.id, result.url, result.node) == (42, url, "node-1")
    assert (result.status, result.error, result.retryable) == (200, None, False)
    assert (result.bytes, result.sha256) == (len(body), sha)
    assert result.content_type == mime
    assert result.declared_type == "application/octet-stream"
    assert (result.width, result.height) == dimensions
    assert result.path == f"images.example/{sha[:2]}/{sha}.{ext}"
    assert stored_files(out) == [out / result.path]
    assert (out / result.path).read_bytes() == body
    assert mocked.calls[0].request.headers["User-Agent"] == USER_AGENT


def test_host_with_port_gets_its_own_folder(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get("http://127.0.0.1:8000/a.png", body=PNG)

    result = fetch("http://127.0.0.1:8000/a.png", out)

    assert result.path.startswith("127.0.0.1_8000/")


def test_same_content_twice_is_one_file(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(f"{HOST}/a.png", body=PNG)
    mocked.get(f"{HOST}/copy-of-a.png", body=PNG)

    first = fetch(f"{HOST}/a.png", out, task_id=1)
    second = fetch(f"{HOST}/copy-of-a.png", out, task_id=2)

    assert first.outcome == second.outcome == "stored"
    assert first.path == second.path
    assert stored_files(out) == [out / first.path]
    assert (out / first.path).read_bytes() == PNG


def test_svg_is_stored_without_dimensions(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(f"{HOST}/logo", body=SVG, content_type="image/svg+xml")

    result = fetch(f"{HOST}/logo", out)

    assert result.outcome == "stored"
    assert result.content_type == "image/svg+xml"
    assert result.path.endswith(".svg")
    assert (result.width, result.height) == (None, None)
    assert (out / result.path).read_bytes() == SVG


def test_not_found_is_final(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(f"{HOST}/gone.png", status=404, body=b"<html>not here</html>")

    result = fetch(f"{HOST}/gone.png", out)

    assert_failed(result, out, "http_404", retryable=False)
    assert result.status == 404


@pytest.mark.parametrize("status", [429, 503])
def test_overloaded_server_is_retryable(
    mocked: responses.RequestsMock, out: Path, status: int
) -> None:
    mocked.get(f"{HOST}/busy.png", status=status, body=b"slow down")

    result = fetch(f"{HOST}/busy.png", out)

    assert_failed(result, out, f"http_{status}", retryable=True)
    assert result.status == status
    assert result.retry_after is None  # no Retry-After: the broker's backoff applies


SERVER_NOW = "Wed, 21 Oct 2026 07:28:00 GMT"
SERVER_NOW_UNIX = 1792567680.0  # the same instant


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("2", None, 2.0),
        (" 120 ", None, 120.0),
        ("0", None, 0.0),
        ("1.5", None, 1.5),  # not in the RFC, but some servers send it
        ("86400", None, MAX_RETRY_AFTER),
        ("9" * 400, None, MAX_RETRY_AFTER),  # too long even for a float
        ("Wed, 21 Oct 2026 07:28:30 GMT", SERVER_NOW, 30.0),
        ("Wednesday, 21-Oct-26 07:28:30 GMT", SERVER_NOW, 30.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:30 2026", SERVER_NOW, 30.0),  # asctime form
        ("Wed, 21 Oct 2026 07:28:00 GMT", SERVER_NOW, 0.0),
        ("Thu, 22 Oct 2026 07:28:00 GMT", SERVER_NOW, MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_a_delay_or_a_date(value: str, date: str | None, expected: float) -> None:
    assert retry_after_seconds(value, date, now=0.0) == expected


def test_retry_after_date_counts_from_the_servers_clock_when_it_sends_one() -> None:
    # Our clock is an hour ahead of the server's: counting from it would give nothing.
    skewed_now = SERVER_NOW_UNIX + 3600
    later = "Wed, 21 Oct 2026 07:28:45 GMT"

    assert retry_after_seconds(later, SERVER_NOW, skewed_now) == 45.0
    assert retry_after_seconds(later, None, SERVER_NOW_UNIX) == 45.0
    assert retry_after_seconds(later, "yesterday-ish", SERVER_NOW_UNIX + 40) == 5.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-5",
        "+5",
        "1e3",
        "inf",
        "nan",
        "\u0663",  # an Arabic-Indic digit: a digit to Python, not to HTTP
        "Wed, 21 Oct 2026 07:27:59 GMT",  # already past
        "Wed, 32 Oct 2026 07:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
    ],
)
def test_retry_after_garbage_or_past_is_ignored(value: str | None) -> None:
    assert retry_after_seconds(value, SERVER_NOW, now=SERVER_NOW_UNIX) is None


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "2"}, 2.0),
        (503, {"Retry-After": "Wed, 21 Oct 2026 07:29:00 GMT", "Date": SERVER_NOW}, 60.0),
        (503, {"Retry-After": "99999"}, MAX_RETRY_AFTER),
        (503, {"Retry-After": "later"}, None),
    ],
)
def test_overloaded_server_says_when_to_retry(
    mocked: responses.RequestsMock,
    out: Path,
    status: int,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    mocked.get(f"{HOST}/busy.png", status=status, body=b"slow down", headers=headers)

    result = fetch(f"{HOST}/busy.png", out)

    assert_failed(result, out, f"http_{status}", retryable=True)
    assert result.retry_after == expected


def test_retry_after_on_a_final_failure_or_a_success_is_not_reported(
    mocked: responses.RequestsMock, out: Path
) -> None:
    # Some servers send Retry-After with anything; only a retry can use it.
    mocked.get(f"{HOST}/gone.png", status=404, headers={"Retry-After": "5"})
    mocked.get(f"{HOST}/a.png", body=PNG, headers={"Retry-After": "5"})

    gone = fetch(f"{HOST}/gone.png", out)
    stored = fetch(f"{HOST}/a.png", out)

    assert (gone.error, gone.retry_after) == ("http_404", None)
    assert (stored.outcome, stored.retry_after) == ("stored", None)


def test_declared_length_above_limit_is_refused_before_writing(
    mocked: responses.RequestsMock, out: Path
) -> None:
    limits = replace(DEFAULT_LIMITS, max_bytes=1000)
    body = PNG + b"\0" * (2000 - len(PNG))
    mocked.get(f"{HOST}/huge.png", body=body, auto_calculate_content_length=True)

    result = fetch(f"{HOST}/huge.png", out, limits)

    assert mocked.calls[0].response.headers["Content-Length"] == "2000"
    assert_failed(result, out, "too_large", retryable=False)
    assert result.bytes == 0
    assert not (out / TMP_DIR).exists()  # no temporary file was even opened


def test_body_longer_than_limit_without_length_is_too_large(
    mocked: responses.RequestsMock, out: Path
) -> None:
    limits = replace(DEFAULT_LIMITS, max_bytes=1000)
    body = PNG + b"\0" * (8 * CHUNK_BYTES)
    mocked.get(f"{HOST}/sneaky.png", body=body)

    result = fetch(f"{HOST}/sneaky.png", out, limits)

    assert "Content-Length" not in mocked.calls[0].response.headers
    assert_failed(result, out, "too_large", retryable=False)
    # Reading stops just past the limit instead of draining whatever the server sends.
    assert limits.max_bytes < result.bytes <= limits.max_bytes + CHUNK_BYTES


def test_body_of_exactly_the_limit_is_stored(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(f"{HOST}/a.png", body=PNG)

    result = fetch(f"{HOST}/a.png", out, replace(DEFAULT_LIMITS, max_bytes=len(PNG)))

    assert result.outcome == "stored"


def test_html_served_as_jpeg_is_not_an_image(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(
        f"{HOST}/photo.jpg", body=b"<html><body>Oops</body></html>", content_type="image/jpeg"
    )

    result = fetch(f"{HOST}/photo.jpg", out)

    assert_failed(result, out, "not_an_image", retryable=False)
    assert result.declared_type == "image/jpeg"


def test_truncated_png_header_is_a_corrupt_image(mocked: responses.RequestsMock, out: Path) -> None:
    mocked.get(f"{HOST}/broken.png", body=PNG[:20], content_type="image/png")

    result = fetch(f"{HOST}/broken.png", out)

    assert_failed(result, out, "corrupt_image", retryable=False)
    assert result.content_type == "image/png"


@pytest.mark.parametrize(
    ("failure", "prefix"),
    [
        (requests.ConnectionError("connection refused"), "connection_error"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
        (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
    ],
    ids=["refused", "connect-timeout", "read-timeout"],
)
def test_network_failures_are_retryable(
    mocked: responses.RequestsMock, out: Path, failure: Exception, prefix: str
) -> None:
    mocked.get(f"{HOST}/a.png", body=failure)

    result = fetch(f"{HOST}/a.png", out)

    assert result.error.startswith(f"{prefix}: ")
    assert (result.outcome, result.retryable, result.path) == ("failed", True, None)
    assert stored_files(out) == []
    assert result.status is None


@pytest.mark.parametrize("spilled", [False, True], ids=["in-memory", "spilled-to-disk"])
def test_failure_while_streaming_leaves_no_temporary_file(
    mocked: responses.RequestsMock, out: Path, spilled: bool
) -> None:
    # The server promises more bytes than it sends: the connection breaks mid-body.
    # A body past MEMORY_BODY_BYTES was being written to a temporary file when it broke.
    body = PNG + b"\0" * (MEMORY_BODY_BYTES if spilled else 0)
    mocked.get(f"{HOST}/cut.png", body=body, headers={"Content-Length": str(len(body) + 100)})

    result = fetch(f"{HOST}/cut.png", out, replace(DEFAULT_LIMITS, max_bytes=4 * MEMORY_BODY_BYTES))

    assert (out / TMP_DIR).exists() is spilled  # fetch() asserts that it is empty
    assert (result.outcome, result.retryable) == ("failed", True)
    assert stored_files(out) == []


def test_image_below_the_minimum_size_is_refused(mocked, out):
    mocked.get(f"{HOST}/small.png", body=PNG, content_type="image/png")
    result = fetch(
        f"{HOST}/small.png", out, replace(DEFAULT_LIMITS, max_bytes=64 * 1024, min_width=8)
    )
    assert_failed(result, out, "too_small", retryable=False)
    assert (result.width, result.height) == (7, 5)


def test_decompression_bomb_is_refused_and_not_stored(mocked, out):
    # A valid PNG whose header claims 30000 x 30000 pixels: Pillow's bomb guard trips
    # on the header alone, long before anything would be decoded.
    bomb = io.BytesIO()
    Image.new("1", (30000, 30000)).save(bomb, format="PNG")
    mocked.get(f"{HOST}/bomb.png", body=bomb.getvalue(), content_type="image/png")
    result = fetch(f"{HOST}/bomb.png", out, replace(DEFAULT_LIMITS, max_bytes=16 * 1024 * 1024))
    assert_failed(result, out, "decompression_bomb", retryable=False)


def test_a_url_with_unquoted_characters_is_quoted_on_the_wire(mocked, out):
    """Image requests skip Session.get (see safehttp.open_url's lean path), but a URL
    that needs quoting still gets it, and the session's User-Agent still goes out."""
    mocked.get(f"{HOST}/a%20b/%C3%BC.png", body=PNG, content_type="image/png")
    result = fetch(f"{HOST}/a b/ü.png", out)
    assert result.outcome == "stored"
    sent = mocked.calls[0].request
    assert sent.url == f"{HOST}/a%20b/%C3%BC.png"
    assert sent.headers["User-Agent"] == USER_AGENT
    assert sent.headers["Accept-Encoding"] == "identity"


def test_a_lean_get_reads_headers_in_any_case_and_keeps_no_cookies(mocked):
    """The lean path hands back urllib3's own headers instead of a copy (see
    safehttp._CheckedAdapter.build_response): lookups still ignore case, and an image's
    Set-Cookie lands in no jar."""
    mocked.get(
        f"{HOST}/a.png",
        body=PNG,
        content_type="image/png",
        headers={"set-cookie": "s=1; Path=/", "X-Thing": "a"},
    )
    session = make_session(4, USER_AGENT, AddressPolicy())
    with open_url(session, f"{HOST}/a.png", 5.0, 3, lean=True) as response:
        assert response.status_code == 200 and response.url == f"{HOST}/a.png"
        assert response.headers["content-TYPE"] == "image/png"
        assert response.headers.get("x-THING") == "a"
        assert not response.is_redirect
    assert not session.cookies and not response.cookies


def test_a_disk_error_is_a_retryable_store_error(mocked, out):
    """Our side failing (here OUT/.tmp is a file, as a full or broken disk would fail
    the write) is reported like any failure, never raised: the task is not lost."""
    mocked.get(f"{HOST}/ok.png", body=PNG, content_type="image/png")
    out.mkdir(parents=True)
    (out / TMP_DIR).write_bytes(b"not a folder")
    result = fetch_image(
        make_session(4, USER_AGENT, AddressPolicy()), 1, f"{HOST}/ok.png", out, "n", LIMITS
    )
    assert (result.outcome, result.retryable) == ("failed", True)
    assert result.error.startswith("store_error: ")
    assert result.path is None and stored_files(out) == []


def test_an_untrusted_certificate_is_a_final_tls_error_not_a_down_host(out, serve, self_signed):
    def tls(conn) -> None:  # type: ignore[no-untyped-def]
        with self_signed.wrap_socket(conn, server_side=True) as wrapped:
            wrapped.recv(65536)

    url = serve(tls, "https")
    session = make_session(4, "test-agent", AddressPolicy(allow_private=True))
    try:
        result = fetch_image(session, 1, url, out, "n1", LIMITS)
    finally:
        session.close()

    assert result.error.startswith("tls_error: certificate verify failed"), result
    assert result.retryable is False and result.status is None
    assert "Max retries" not in result.error and "0x" not in result.error
    politeness = Politeness.from_config(PolitenessConfig())
    assert politeness.feedback("127.0.0.1", result, 0.0) is False
    assert politeness.state("127.0.0.1").down_errors == 0  # an answer: not a down host


def test_an_image_behind_a_private_ca_is_stored_on_the_lean_path_with_its_bundle(out, private_site):
    image = private_site.truth["images"][0]
    url = private_site.url + image["path"].lstrip("/")
    policy = AddressPolicy(allow_private=True)
    trusting = make_session(4, USER_AGENT, policy, SessionOptions(verify=str(private_site.ca_pem)))
    result = fetch_image(trusting, 1, url, out, "node-1", LIMITS)
    assert (result.outcome, result.sha256) == ("stored", image["sha256"]), result
    untrusted = fetch_image(make_session(4, USER_AGENT, policy), 2, url, out, "node-1", LIMITS)
    assert untrusted.error.startswith("tls_error: certificate verify failed"), untrusted
    assert not untrusted.retryable


def test_a_hotlink_protected_image_is_stored_only_with_the_page_as_referer(out, tmp_path):
    site = tmp_path / "site"
    truth = generate_site(site, pages=1, images=2, seed=3)
    image = truth["images"][0]
    with serve_files(site, hotlink_protect=True) as server:
        url = server.url + image["path"].lstrip("/")
        session = make_session(4, USER_AGENT, AddressPolicy(allow_private=True))
        refused = fetch_image(session, 1, url, out, "node-1", LIMITS)
        assert (refused.status, refused.error) == (403, "http_403")
        page = server.url + "index.html"
        result = fetch_image(session, 2, url, out, "node-1", LIMITS, referer=page)
        assert (result.outcome, result.sha256) == ("stored", image["sha256"])
        assert server.referers[image["path"]] == page


# -- opt-outs read before the body -----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "signal"),
    [
        ({"X-Robots-Tag": "noimageai"}, "x-robots-tag: noimageai"),
        ({"X-Robots-Tag": "noindex, noai"}, "x-robots-tag: noai"),
        ({"tdm-reservation": "1"}, "tdm-reservation: 1"),
    ],
)
def test_an_opted_out_image_is_stored_with_its_signal(
    mocked: responses.RequestsMock, out: Path, headers: dict[str, str], signal: str
) -> None:
    mocked.get(f"{HOST}/a.png", body=PNG, headers=headers)
    result = fetch(f"{HOST}/a.png", out)
    assert result.outcome == "stored"
    assert result.opt_out == signal


def test_a_dataset_crawl_does_not_read_an_opted_out_image(
    mocked: responses.RequestsMock, out: Path
) -> None:
    mocked.get(f"{HOST}/a.png", body=PNG, headers={"X-Robots-Tag": "noai"})
    result = fetch(f"{HOST}/a.png", out, replace(LIMITS, skip_opted_out=True))
    assert_failed(result, out, "opt_out: x-robots-tag: noai", retryable=False)
    assert result.opt_out == "x-robots-tag: noai"
    assert result.bytes == 0 and result.local is None  # nothing read; not the node's fault


def test_a_signal_for_another_robot_is_not_an_opt_out(
    mocked: responses.RequestsMock, out: Path
) -> None:
    mocked.get(f"{HOST}/a.png", body=PNG, headers={"X-Robots-Tag": "otherbot: noai"})
    mocked.get(f"{HOST}/b.png", body=PNG, headers={"X-Robots-Tag": "mybot: noai"})
    limits = replace(LIMITS, skip_opted_out=True, agent="mybot")
    assert fetch(f"{HOST}/a.png", out, limits).outcome == "stored"
    assert fetch(f"{HOST}/b.png", out, limits).error == "opt_out: x-robots-tag: noai"
