"""The committed gRPC stubs match the .proto sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, f"run scripts/gen_proto.py:\n{proc.stdout}{proc.stderr}"


def test_runner_service_has_every_call():
    from common.rpc import admin_pb2, runner_pb2

    service = runner_pb2.DESCRIPTOR.services_by_name["RunnerService"]
    assert set(service.methods_by_name) == {"GetJob", "StreamLogs", "ReportStep", "Heartbeat", "Complete",
                                            "UploadArtifact", "DownloadArtifact", "RestoreCache", "SaveCache"}
    upload = service.methods_by_name["UploadArtifact"]
    assert upload.client_streaming and not upload.server_streaming
    stream = service.methods_by_name["StreamLogs"]
    assert stream.client_streaming and stream.server_streaming
    # Log content must be bytes: steps print non-UTF-8.
    data = admin_pb2.LogRun.DESCRIPTOR.fields_by_name["data"]
    assert data.type == data.TYPE_BYTES
