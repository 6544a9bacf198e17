"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

``docker-compose config`` (Debian's docker-compose, installed by scripts/setup.sh for the
tests) validates the file against the Compose schema and interpolates it; the structural
tests check what the schema cannot: KRaft listeners that fit together, a scalable
detector, healthchecks behind every ``service_healthy``, and SMSGUARD_* names that exist.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from detector.settings import SETTINGS

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
SECRET_ENV = {"SMSGUARD_RECIPIENT_SECRET": "compose-test-secret-0123456789"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _compose_config(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: apt-get install -y docker-compose (scripts/setup.sh does this)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGUARD_")}
    return subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], cwd=REPO, env={**env, **extra_env},
                          capture_output=True, text=True, timeout=60)


def test_docker_compose_config_accepts_the_file():
    done = _compose_config(SECRET_ENV)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert {"kafka", "redis", "topics", "detector", "dashboard"} <= set(resolved["services"])
    assert resolved["services"]["detector"]["environment"]["SMSGUARD_RECIPIENT_SECRET"] == SECRET_ENV[
        "SMSGUARD_RECIPIENT_SECRET"]


def test_docker_compose_refuses_to_run_without_a_recipient_secret():
    done = _compose_config({})
    assert done.returncode != 0
    assert "SMSGUARD_RECIPIENT_SECRET" in done.stderr


def test_kafka_runs_kraft_with_consistent_listeners(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert not any("ZOOKEEPER" in key for key in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert any(v.startswith(f"{node_id}@kafka:") for v in voters)

    def names(value: str) -> set[str]:
        return {item.split(":", 1)[0] for item in value.split(",")}
    listeners = names(env["KAFKA_LISTENERS"])
    protocol_map = names(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
    assert set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")) <= listeners
    assert names(env["KAFKA_ADVERTISED_LISTENERS"]) <= listeners - {env["KAFKA_CONTROLLER_LISTENER_NAMES"]}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert listeners <= protocol_map
    controller_port = voters[0].rsplit(":", 1)[1]
    assert f"{env['KAFKA_CONTROLLER_LISTENER_NAMES']}://:{controller_port}" in env["KAFKA_LISTENERS"]
    # Containers reach the broker at the advertised INTERNAL address smsguard is configured with.
    bootstrap = services["detector"]["environment"]["SMSGUARD_KAFKA_BOOTSTRAP"]
    assert f"://{bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"   # one node cannot replicate
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"      # the topics service creates them


def test_redis_has_a_memory_limit_that_never_evicts_port_states(services):
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert "--maxmemory" in command
    assert command[command.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert _env(services["detector"])["SMSGUARD_REDIS_URL"].startswith("redis://redis:6379")


def test_detector_scales(services):
    detector = services["detector"]
    assert "container_name" not in detector, "--scale needs containers Compose can name"
    assert "ports" not in detector, "fixed host ports would clash between replicas"
    assert detector["command"] == ["smsguard", "worker"]
    assert detector.get("build") in (".", {"context": "."})


def test_app_services_wait_for_healthy_dependencies(services):
    for name in ("detector", "dashboard", "topics"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
    for name in ("detector", "dashboard"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name]


def test_every_service_healthy_dependency_has_a_healthcheck(services):
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"


def test_every_smsguard_variable_is_a_real_setting():
    known = {s.name for s in SETTINGS}
    used = set(re.findall(r"\bSMSGUARD_[A-Z0-9_]+", COMPOSE_FILE.read_text()))
    assert used, "no SMSGUARD_* variables found"
    assert used <= known, f"not in detector/settings.py SETTINGS: {sorted(used - known)}"


def test_smsguard_commands_the_stack_runs_exist(services):
    from detector.cli import main

    commands = {s["command"][1] for s in services.values() if s.get("command", [None])[0] == "smsguard"}
    assert commands == {"worker", "dashboard", "topics"}
    missing = commands - set(main.commands)
    assert not missing, f"docker-compose.yml runs smsguard commands that do not exist: {sorted(missing)}"


def test_ports_the_healthchecks_poll_are_the_configured_ones(services):
    for name, setting in (("detector", "SMSGUARD_WORKER_WEB_PORT"), ("dashboard", "SMSGUARD_DASHBOARD_PORT")):
        port = _env(services[name])[setting]
        assert f":{port}/" in " ".join(services[name]["healthcheck"]["test"])
    assert _env(services["dashboard"])["SMSGUARD_DASHBOARD_HOST"] == "0.0.0.0"   # reachable from the host


def test_dockerfile_builds_the_package_and_runs_the_worker():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, flags=re.M)
    assert re.search(r'^CMD \["smsguard", "worker"\]', dockerfile, flags=re.M)
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for line in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for source in line.split():
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
            assert source not in ignored, f"Dockerfile copies {source}, which .dockerignore excludes"
