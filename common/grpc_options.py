"""gRPC channel and server options both ends of RunnerService must agree on.

Keepalive pings keep an idle runner's connection (NAT, bhyve vnic) open and
detect a dead orchestrator. A server that receives pings more often than its
``min_recv_ping_interval_without_data_ms`` answers with GOAWAY "too many
pings" and drops the runner, so the server's minimum is kept below the
client's interval here, in one place, and a test checks the relation.
"""

from __future__ import annotations

KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
# Batches are bounded far below this; the limit only stops a runaway sender.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def client_options() -> list[tuple[str, int]]:
    """Options for the runner's channel."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Reconnect quickly after an orchestrator restart; the runner adds its
        # own capped backoff with jitter on top.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


def server_options() -> list[tuple[str, int]]:
    """Options for the orchestrator's server."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # gRPC sets SO_REUSEPORT by default: a second orchestrator on the same
        # port would silently share the runners' connections.
        ("grpc.so_reuseport", 0),
    ]
