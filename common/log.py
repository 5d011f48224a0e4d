"""Logging set-up shared by every Solstice binary.

Human-readable lines on a TTY, JSON lines otherwise (for journald, SMF logs
and log shippers). The level comes from the ``--log-level`` flag, else
``SOLSTICE_LOG_LEVEL``, else ``info``. Structured fields are passed with
``extra={"fields": {...}}`` and appear as ``key=value`` or as JSON members.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Literal

from common.errors import ConfigError
from common.masking import Masker, MaskingFilter

LogFormat = Literal["auto", "human", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")

# One process-wide masker: services add job secrets to it as they learn them.
masker = Masker()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return masker.mask(json.dumps(doc, default=str))


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return masker.mask(line)


def resolve_level(level: str | None) -> int:
    name = (level or os.environ.get("SOLSTICE_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        raise ConfigError(
            f"unknown log level {name!r}: choose one of {', '.join(LEVELS)}"
        )
    return int(getattr(logging, name.upper()))


def setup_logging(
    level: str | None = None,
    fmt: LogFormat = "auto",
    stream: IO[str] | None = None,
) -> None:
    """Configure the root logger once per process; later calls replace it."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = os.environ.get("SOLSTICE_LOG_FORMAT", "auto")  # type: ignore[assignment]
    if fmt == "auto":
        fmt = "human" if stream.isatty() else "json"
    if fmt not in ("human", "json"):
        raise ConfigError(f"unknown log format {fmt!r}: choose auto, human or json")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(HumanFormatter() if fmt == "human" else JsonFormatter())
    handler.addFilter(MaskingFilter(masker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(resolve_level(level))
    # Library chatter at info level drowns our own lines.
    for noisy in ("aio_pika", "aiormq", "asyncio", "grpc"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
