"""An S3-compatible server on loopback for the tests that store on one: moto's server mode.

No MinIO binary can be installed here; moto speaks the same S3 API over a real socket, so the
code under test talks HTTP to it exactly as it would to AWS or MinIO. Credentials and the
endpoint reach the code through the standard environment (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`), as a team would set them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

#: How long the server may take to answer its first request.
START_SECONDS = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    #: The environment a client needs: credentials, region and endpoint.
    env: dict[str, str]

    def client(self) -> Any:
        """A boto3 S3 client of this server (the tests' own view of the bucket)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    def bucket(self, name: str | None = None) -> str:
        """Create a new, empty bucket and return its name."""
        bucket = name or f"modelloop-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in `bucket`, sorted."""
        client = self.client()
        found: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server(*, authenticate: bool = False) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, stopped on exit. `authenticate`: it checks
    credentials (moto's IAM knows none, so every request is denied), as a server given wrong
    ones would."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if authenticate else None,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                httpx.get(endpoint + "/", timeout=1.0)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
                time.sleep(0.1)
        env = {
            "AWS_ACCESS_KEY_ID": "modelloop-test",
            "AWS_SECRET_ACCESS_KEY": "modelloop-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        yield S3Server(endpoint, env)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def s3_environment(server: S3Server) -> Iterator[None]:
    """`server`'s credentials and endpoint in os.environ for the block, restored after."""
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
