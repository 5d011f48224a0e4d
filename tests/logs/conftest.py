"""The log tests' fixtures: the node tests' cluster (real PostgreSQL + RabbitMQ, a fresh prefix) and moto's S3."""

from tests.logs.s3 import moto_endpoint, s3_bucket  # noqa: F401 - fixtures (the archive's S3 tests)
from tests.node.conftest import cluster  # noqa: F401 - a fixture
