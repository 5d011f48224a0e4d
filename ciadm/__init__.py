"""ciadm: the operator's command-line client of the orchestrator's AdminService."""

import os

# gRPC core writes its own INFO lines to stderr (a failed TLS handshake, ...); ciadm
# says what went wrong in one ERROR line instead. Read when gRPC starts, so set first.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
