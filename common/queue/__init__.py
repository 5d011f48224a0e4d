"""The job queue and event bus shared by the integration and the orchestrator.

``topology`` names every broker object; ``publisher`` and ``events`` publish
with confirms; ``worker`` is the ack-after-handler consuming engine;
``local_events`` is the single-node event bus in SQLite. The orchestrator's
job consumers (RabbitMQ and single-node) live in ``orchestrator.queue``.
"""

from common.queue.disposition import Action, Disposition
from common.queue.errors import InvalidMessage, PoisonMessage, PublishFailed, QueueError, QueueUnavailable
from common.queue.events import EventConsumer, EventHandler, EventPublisher, RabbitEventPublisher
from common.queue.local_events import LocalEventBus
from common.queue.publisher import JobPublisher, RabbitJobPublisher
from common.queue.topology import Topology

__all__ = [
    "Action",
    "Disposition",
    "EventConsumer",
    "EventHandler",
    "EventPublisher",
    "InvalidMessage",
    "JobPublisher",
    "LocalEventBus",
    "PoisonMessage",
    "PublishFailed",
    "QueueError",
    "QueueUnavailable",
    "RabbitEventPublisher",
    "RabbitJobPublisher",
    "Topology",
]
