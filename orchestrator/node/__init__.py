"""An orchestrator node: intake, scheduler, lifecycle, capacity, heartbeats, reconciliation.

    async with open_parts(settings) as parts:       # serve.py: store, queue, driver, logs
        async with Node(parts, settings) as node:   # node.py: the supervisor
            await node.wait()

``scheduler`` turns queue deliveries into claimed attempts, ``lifecycle``
drives one attempt, ``capacity`` counts VMs, ``heartbeat`` keeps hosts alive
and requeues lapsed ones, ``reconcile`` destroys orphan VMs. See
docs/orchestrator.md.
"""

from orchestrator.node.node import Node, NodeError, NodeParts
from orchestrator.node.settings import NodeSettings

__all__ = ["Node", "NodeError", "NodeParts", "NodeSettings"]
