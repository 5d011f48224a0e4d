"""Label queues with priorities, and moving an older version's label queue to them.

A label queue is declared with ``x-max-priority`` (``Topology.label_queue_arguments``) so a
later attempt of a job (``ANOTHER_ATTEMPT``: requeued from a lost host, retried)
goes ahead of new work. RabbitMQ cannot change a queue's arguments in place: a
queue declared by a version before priorities (only ``x-dead-letter-exchange``)
refuses the new declaration (406 PRECONDITION_FAILED). ``prepare_label_queue``
finds out on a channel of its own, before the node declares the queue on its
consuming channel:

* the queue is new or already has priorities: declare it so;
* it is an older version's and no node consumes it: migrate it now, losing and
  doubling nothing that matters (``_migrate``);
* it is an older version's and some node consumes it (a rolling upgrade): use it
  as it is - jobs still flow, later attempts just wait their turn - and say so.
  It is migrated by the first node that starts while no node consumes it (drain
  the label's nodes, or restart them all, then start one);
* anything else (other arguments): the declaration error, as before.

The migration, on a queue nobody consumes: a holding queue (with priorities) is
bound with the label's routing key, so requests published meanwhile land there;
the old queue is unbound, its waiting messages moved to the holding queue
(confirmed before each is acknowledged); the old queue is deleted only if still
unused and empty (``if_unused``, ``if_empty``: atomic in the broker), then
declared again with priorities and bound, and the holding queue's messages moved
back into it. A request published while both are bound lands in both: a
duplicate request is harmless (the claim is idempotent). If a node started
consuming the old queue meanwhile, everything is put back as it was.
"""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable

from common.queue.topology import Topology
from common.queue.worker import copy_message

log = logging.getLogger(__name__)


async def prepare_label_queue(connection: AbstractConnection, topology: Topology, label: str) -> FieldTable:
    """Make sure ``label``'s queue exists and return the arguments to declare it with (see the module)."""
    wanted = topology.label_queue_arguments()
    if await _declares(connection, topology, label, wanted):
        return wanted
    older = topology.label_queue_arguments(priorities=False)
    if not await _declares(connection, topology, label, older):
        return wanted  # other arguments still: the consuming channel's declaration says what is wrong
    if await _migrate(connection, topology, label):
        log.info("label queue %s moved to priorities", topology.label_queue(label))
        return wanted
    log.warning("label queue %s was declared by an older version without priorities and a node consumes it: "
                "later attempts wait behind new work there until it is migrated (docs/queue.md)",
                topology.label_queue(label))
    return older


async def _declares(connection: AbstractConnection, topology: Topology, label: str,
                    arguments: FieldTable) -> bool:
    """Declare the queue with ``arguments`` on a channel of its own; False when the broker refuses."""
    channel = await connection.channel()
    try:
        jobs = await topology.declare_jobs(channel)
        queue = await channel.declare_queue(topology.label_queue(label), durable=True, arguments=arguments)
        await queue.bind(jobs, routing_key=label)
        return True
    except ChannelPreconditionFailed:
        return False  # the broker closed this channel, not the connection
    finally:
        if not channel.is_closed:
            await channel.close()


async def _migrate(connection: AbstractConnection, topology: Topology, label: str) -> bool:
    """Re-declare an older version's label queue with priorities if nobody consumes it; True when done."""
    name, wanted = topology.label_queue(label), topology.label_queue_arguments()
    channel = await connection.channel(publisher_confirms=True)
    try:
        old = await channel.declare_queue(name, passive=True)
        if (old.declaration_result.consumer_count or 0) > 0:
            return False
        jobs = await topology.declare_jobs(channel)
        holding = await channel.declare_queue(topology.migrating_queue(label), durable=True, arguments=wanted)
        await holding.bind(jobs, routing_key=label)
        await old.unbind(jobs, routing_key=label)
        await _move(channel, old, holding)
        try:
            await old.delete(if_unused=True, if_empty=True)
        except ChannelPreconditionFailed:
            # A node started consuming it meanwhile: put everything back as it was.
            channel = await connection.channel(publisher_confirms=True)
            old = await channel.declare_queue(name, passive=True)
            await _put_back(channel, topology, label, old)
            return False
        new = await channel.declare_queue(name, durable=True, arguments=wanted)
        await _put_back(channel, topology, label, new)
        return True
    finally:
        if not channel.is_closed:
            await channel.close()


async def _put_back(channel: AbstractChannel, topology: Topology, label: str, into: AbstractQueue) -> None:
    """Bind ``into`` again, then move the holding queue's messages into it and delete it."""
    jobs = await channel.get_exchange(topology.jobs_exchange)
    await into.bind(jobs, routing_key=label)
    holding = await channel.declare_queue(topology.migrating_queue(label), passive=True)
    await holding.unbind(jobs, routing_key=label)
    await _move(channel, holding, into)
    await holding.delete(if_unused=False, if_empty=True)


async def _move(channel: AbstractChannel, source: AbstractQueue, target: AbstractQueue) -> int:
    """Move every message waiting in ``source`` to ``target``: each confirmed there before it is acknowledged."""
    moved = 0
    while (message := await source.get(no_ack=False, fail=False)) is not None:
        await channel.default_exchange.publish(copy_message(message), routing_key=target.name)
        await message.ack()
        moved += 1
    return moved
