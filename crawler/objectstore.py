"""Where images go when ``--out`` is an object store, not a folder: ``s3://bucket/prefix``.

``open_store(url)`` picks the store by scheme: ``s3://`` (Amazon S3 or any S3-compatible
server: MinIO, Ceph, moto; through boto3, with the AWS settings of the environment:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3`` for a server
other than Amazon's, ``~/.aws``), or ``memory://NAME`` (a store in this process, for
tests). Keys are the relative paths the manifest holds, under the URL's prefix, so the
nodes of a crawl fill one store and the names never collide (they are content
addresses).

The guarantee ``put`` keeps: an object appears under its final key only complete and
verified. A PUT is atomic (an S3 object is the whole body or nothing), it carries the
body's MD5 and SHA-256 (``Content-MD5``, ``x-amz-checksum-sha256``), which S3 checks
before it keeps the object, and the ETag it answers is compared with the MD5 we
computed. boto3, not s3fs: s3fs runs asyncio on a thread of its own, which refuses to
run inside a gevent-patched node ("Calling sync() from within a running loop"); boto3's
blocking client waits on gevent's patched sockets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from crawler.errors import ConfigError

SCHEMES = ("s3", "memory")


class ObjectStore(Protocol):
    """A flat store of image files under their relative paths."""

    where: str  # the store's URL, for messages and the export's ``file`` column

    def put(self, key: str, data: bytes, sha256: str) -> None:
        """Store ``data`` under ``key``, complete and verified, or raise ``OSError``."""

    def keys(self) -> Iterator[str]:
        """Every key in the store."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None if there is none."""


def default_spool() -> str:
    """The local folder a node keeps downloads in progress in, when ``--out`` is a store
    and ``download.spool`` is empty: under the system's temporary folder."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), "crawler-spool")


def is_store_url(location: str) -> bool:
    """Whether ``--out`` names an object store rather than a folder."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def split_store_url(url: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b`` -> ``("s3", "bucket", "a/b")``; ``ConfigError`` when malformed."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or scheme.lower() not in SCHEMES or not bucket:
        raise ConfigError(f"out: {url!r} is not a store URL (s3://BUCKET/PREFIX)")
    return scheme.lower(), bucket, prefix.strip("/")


def open_store(url: str) -> ObjectStore:
    """The store at ``url``. Raises ``ConfigError`` for a URL it cannot use."""
    scheme, bucket, prefix = split_store_url(url)
    if scheme == "memory":
        with _MEMORY_LOCK:
            return _MEMORY.setdefault(url, MemoryStore(url))
    return S3Store(bucket, prefix)


def digests(data: bytes) -> tuple[str, str]:
    """(hex SHA-256, base64 MD5) of ``data``."""
    return hashlib.sha256(data).hexdigest(), base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class MemoryStore:
    """A store in this process's memory (tests, tools); ``fail`` makes puts raise."""

    where: str
    fail: OSError | None = None

    def __post_init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, sha256: str) -> None:
        if self.fail is not None:
            raise self.fail
        if hashlib.sha256(data).hexdigest() != sha256:
            raise OSError("the body does not hold the content its name says")
        self.objects[key] = bytes(data)

    def keys(self) -> Iterator[str]:
        return iter(list(self.objects))

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)


_MEMORY: dict[str, MemoryStore] = {}
_MEMORY_LOCK = threading.Lock()


class S3Store:
    """An S3 bucket (and prefix) through boto3; every error an ``OSError`` that says why
    (never a credential)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3  # imported only when a store is used (a node patches gevent first)
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.where = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        retries = {"max_attempts": 5, "mode": "standard"}
        self._client = boto3.client("s3", config=Config(retries=retries, max_pool_connections=64))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, sha256: str) -> None:
        actual, md5 = digests(data)
        if actual != sha256:
            raise OSError("the body does not hold the content its name says")
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            reply = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentMD5=md5,
                ChecksumSHA256=checksum,
            )
        except Exception as exc:  # botocore's errors: network, credentials, refusals
            raise OSError(f"{self.where}: {_reason(exc)}") from None
        etag = str(reply.get("ETag", "")).strip('"')
        expected = base64.b64decode(md5).hex()
        if etag and "-" not in etag and len(etag) == 32 and etag != expected:
            raise OSError(f"{self.where}: the stored object's ETag is not the body's MD5")

    def keys(self) -> Iterator[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][len(start) :]
        except Exception as exc:
            raise OSError(f"{self.where}: {_reason(exc)}") from None

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise OSError(f"{self.where}: {_reason(exc)}") from None


def _code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    """What went wrong, from botocore's error: its code and message, one line."""
    code = _code(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code and code not in text else text
