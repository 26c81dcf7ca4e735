"""Logging: plain or JSON lines, and a keyed hash for patient ids.

Patient identifiers never appear in logs or metric labels; where a log line must say which
patient, it carries ``patient_ref(pid, key)``: HMAC-SHA256 of the id under the secret
``WARDWATCH_LOG_HASH_KEY``, truncated to 12 hex characters, which lets an operator
correlate lines (and, holding the key, check a suspected id) without exposing the id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def patient_ref(patient_id: str, key: str) -> str:
    """A stable, non-reversible reference to a patient for logs: HMAC-SHA256 under
    ``key``, the first 12 hex characters (48 bits)."""
    return hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:12]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: int, *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
