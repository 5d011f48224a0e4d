"""The orchestrator: turns job requests into finished jobs on one host.

Queue consumer, scheduler and capacity, state store, VM drivers (bhyve,
local), the gRPC server for runners and operators, and the log store.
"""
