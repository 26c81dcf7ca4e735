"""The demo's worker processes: started with the demo's settings, probed, scraped, stopped.

A :class:`WorkerProcess` runs ``python -m cli.main worker`` in its own session with the
settings passed through the environment (:func:`settings_env`), waits for ``/readyz``,
and reads ``/metrics``; :func:`parse_metrics`, :func:`metric_sum` and :func:`totals`
turn the Prometheus text into the counters the demo reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from wardwatch.settings import Settings
from wardwatch.stack import stop_process_group
from wardwatch.transport import web_client_ssl_context, web_scheme

__all__ = ["WorkerProcess", "metric_sum", "parse_metrics", "settings_env", "totals"]


def _plain(value: Any) -> Any:
    """A setting's value as JSON-able data, secrets revealed (for a child's environment)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, Path):
        return str(value)
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a child process the same settings: every one of them (a
    setting left unset, ``None``, is removed from the inherited environment)."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        key = f"WARDWATCH_{name.upper()}"
        for inherited in [k for k in env if k.startswith(key + "__")]:
            del env[inherited]  # nested values come whole, as JSON, below
        value = _plain(getattr(settings, name))
        if value is None:
            env.pop(key, None)
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, dict | list):
            env[key] = json.dumps(value)
        else:
            env[key] = str(value)
    env["WARDWATCH_MODEL_REGISTRY"] = str(settings.resolved_model_registry().resolve())
    return env


@dataclass
class WorkerProcess:
    settings: Settings
    web_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{web_scheme(self.settings)}://127.0.0.1:{self.web_port}"

    def open(self, path: str, timeout: float) -> Any:
        """GET ``path`` of this worker (over HTTPS, trusting its own certificate, when
        the settings give it one)."""
        ctx = web_client_ssl_context(self.settings)
        return urllib.request.urlopen(self.url + path, timeout=timeout, context=ctx)

    def start(self) -> None:
        env = settings_env(self.settings)
        env["WARDWATCH_WEB_PORT"] = str(self.web_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "cli.main", "worker"],
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                self.open("/readyz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"worker not ready after {timeout_s:.0f} s; see {self.log_path}")

    def metrics(self) -> dict[str, float]:
        """The worker's metrics now (or the last ones read, if it does not answer)."""
        try:
            with self.open("/metrics", timeout=5) as resp:
                self.last_metrics = parse_metrics(resp.read().decode())
        except OSError:
            pass
        return self.last_metrics

    def stop(self, timeout_s: float = 20.0) -> int | None:
        return None if self.proc is None else stop_process_group(self.proc, timeout_s)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum Prometheus samples by metric name plus the label set (tiny parser, for the demo)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


def metric_sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def totals(samples: Iterable[dict[str, float]]) -> dict[str, float]:
    """The demo's counters summed over the workers' metrics (and the model's info sample)."""
    tot = {"consumed": 0.0, "scored": 0.0, "dead": 0.0, "skipped": 0.0, "rules_only": 0.0}
    for m in samples:
        tot["rules_only"] += metric_sum(m, "wardwatch_model_unavailable_total")
        for name in m:
            if name.startswith("wardwatch_model_info{"):
                tot["model"] = name  # type: ignore[assignment]
        tot["consumed"] += metric_sum(m, "wardwatch_events_consumed_total")
        tot["scored"] += metric_sum(m, "wardwatch_events_scored_total")
        tot["dead"] += metric_sum(m, "wardwatch_dead_letter_total")
        tot["skipped"] += metric_sum(m, "wardwatch_events_skipped_total")
        for name, value in m.items():
            if name.startswith("wardwatch_commands_total{"):
                for outcome in ("applied", "no_effect", "stale"):
                    if f'outcome="{outcome}"' in name:
                        tot[f"commands_{outcome}"] = tot.get(f"commands_{outcome}", 0.0) + value
            elif name == 'wardwatch_processing_retries_total{stage="conflict"}':
                tot["conflict_retries"] = tot.get("conflict_retries", 0.0) + value
    return tot
