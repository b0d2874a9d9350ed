"""The object store seam: URLs, the in-process double, S3's checks of what it stored
(with a stand-in client), and where report and export find images."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler.errors import ConfigError
from crawler.objectstore import S3Store, is_store_url, open_store, split_store_url
from crawler.output.images import ImageFiles

DATA = b"\x89PNG\r\n\x1a\n not really"
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize(
    ("location", "store"),
    [("s3://b/p", True), ("S3://b", True), ("memory://x/y", True), ("downloads", False),
     ("/data/s3://x", False), ("http://b/p", False)],
)  # fmt: skip
def test_is_store_url(location: str, store: bool) -> None:
    assert is_store_url(location) is store


def test_split_store_url() -> None:
    assert split_store_url("s3://bucket/a/b/") == ("s3", "bucket", "a/b")
    assert split_store_url("s3://bucket") == ("s3", "bucket", "")
    with pytest.raises(ConfigError, match="not a store URL"):
        split_store_url("s3:///prefix")


class StandIn:
    """What S3Store calls on boto3's client, answering as S3 would (or lying)."""

    def __init__(self, etag: str | None = None, error: Exception | None = None) -> None:
        self.etag, self.error, self.calls = etag, error, []

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        md5 = hashlib.md5(kwargs["Body"]).hexdigest()
        return {"ETag": f'"{self.etag or md5}"'}


def s3_with(stand_in: StandIn) -> S3Store:
    store = S3Store.__new__(S3Store)
    store.bucket, store.prefix, store.where = "b", "crawl", "s3://b/crawl"
    store._client = stand_in
    return store


def test_s3_put_sends_both_checksums_under_the_prefix() -> None:
    stand_in = StandIn()
    s3_with(stand_in).put("h/ab/x.png", DATA, SHA)
    (call,) = stand_in.calls
    assert call["Key"] == "crawl/h/ab/x.png" and call["Bucket"] == "b"
    assert base64.b64decode(call["ContentMD5"]) == hashlib.md5(DATA).digest()
    assert base64.b64decode(call["ChecksumSHA256"]) == hashlib.sha256(DATA).digest()


def test_s3_put_refuses_a_body_a_stored_object_or_an_error_that_does_not_match() -> None:
    with pytest.raises(OSError, match="does not hold the content"):
        s3_with(StandIn()).put("k", DATA + b"x", SHA)
    with pytest.raises(OSError, match="ETag is not the body's MD5"):
        s3_with(StandIn(etag="0" * 32)).put("k", DATA, SHA)
    s3_with(StandIn(etag="abc-2")).put("k", DATA, SHA)  # a multipart ETag: S3's checksums

    class Refused(Exception):
        response: ClassVar = {"Error": {"Code": "AccessDenied"}}

    with pytest.raises(OSError, match=r"s3://b/crawl: AccessDenied: denied"):
        s3_with(StandIn(error=Refused("denied"))).put("k", DATA, SHA)


def test_image_files_in_a_folder_and_in_a_store(tmp_path: Path) -> None:
    (tmp_path / "h" / "ab").mkdir(parents=True)
    (tmp_path / "h" / "ab" / "x.png").write_bytes(DATA)
    files = ImageFiles(tmp_path)
    assert files.locate("h/ab/x.png") == str(tmp_path / "h" / "ab" / "x.png")
    assert files.locate("../etc/passwd") is None and files.locate("/etc/passwd") is None
    assert files.locate("h/ab/missing.png") is None

    store = open_store("memory://images-test/p")
    store.put("h/ab/x.png", DATA, SHA)
    held = ImageFiles(tmp_path / "elsewhere", "memory://images-test/p")
    location = held.locate("h/ab/x.png")
    assert location == "memory://images-test/p/h/ab/x.png"
    with held.open(location) as handle:
        assert handle.read() == DATA
    assert held.locate("h/ab/missing.png") is None
