"""The orchestrator's job intake: RabbitMQ label queues (multi-host) or a SQLite queue (single-node)."""

from orchestrator.queue.contract import JobConsumer, OnDeadLetter, OnJob
from orchestrator.queue.local import LocalQueue
from orchestrator.queue.rabbit import RabbitJobConsumer

__all__ = ["JobConsumer", "LocalQueue", "OnDeadLetter", "OnJob", "RabbitJobConsumer"]
