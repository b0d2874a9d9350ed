"""A real S3-compatible server for tests: moto's server mode on a free port of 127.0.0.1.

``moto_s3(tmp_path, buckets)`` starts it, makes the buckets and yields the AWS settings
that reach it (``AWS_ENDPOINT_URL_S3``, which boto3, botocore and s3fs honour, and test
credentials); ``client(settings)`` is a boto3 client for checking what it holds.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3(tmp_path: Path, buckets: tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """A moto S3 server with ``buckets`` made; the AWS settings that reach it. The server
    stops on exit; its stderr is in ``tmp_path / "moto.err"``."""
    port = _free_port()
    errors = tmp_path / "moto.err"
    with errors.open("wb") as stderr:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                assert server.poll() is None, errors.read_text()
                time.sleep(0.1)
        settings = {**AWS, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
        s3 = client(settings)
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        yield settings
    finally:
        server.terminate()
        server.wait(timeout=10)


def client(settings: dict[str, str]) -> Any:
    """A boto3 S3 client for the server ``settings`` reach."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_DEFAULT_REGION"],
    )


def objects(settings: dict[str, str], bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``, by key."""
    s3 = client(settings)
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", ())
    ]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}
