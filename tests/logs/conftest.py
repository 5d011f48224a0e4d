"""The node tests' cluster fixture (real PostgreSQL + RabbitMQ, a fresh prefix) for the log tests."""

from tests.node.conftest import cluster  # noqa: F401 - a fixture
