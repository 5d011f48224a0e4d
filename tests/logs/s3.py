"""S3-compatible storage for the log archive's tests: moto's S3 in server mode.

No S3 server installs on this machine, so the tests use moto's standalone
server (``moto.server.ThreadedMotoServer``): a real HTTP server on loopback
speaking the S3 API, which the archive reaches through aiobotocore exactly as
it would reach S3 or MinIO - signatures, buckets, errors and all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.logstore.settings import S3Config

ACCESS_KEY = "solstice-test"
SECRET_KEY = "solstice-test-secret"


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    bucket: str


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> MotoS3:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"solstice-logs-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket=name)
    return MotoS3(moto_endpoint, name)


def s3_config(bucket: MotoS3, tmp_path: Path) -> S3Config:
    """``logs.s3`` for ``bucket``, the secret key in a 0600 file as a node would have it."""
    secret = tmp_path / "s3.secret"
    secret.write_text(SECRET_KEY + "\n")
    secret.chmod(0o600)
    return S3Config(bucket=bucket.bucket, endpoint_url=bucket.endpoint, access_key_id=ACCESS_KEY,
                    secret_access_key_file=secret, prefix="logs/")


def object_keys(bucket: MotoS3) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=bucket.endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    answer = client.list_objects_v2(Bucket=bucket.bucket)
    return sorted(item["Key"] for item in answer.get("Contents", []))
