"""Fixtures on the real local platform (hack/platform/platform.py).

The platform starts once per test run, or a running one is reused; each test gets its own
namespace, Kafka topic prefix and git repository, removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "hack" / "platform" / "platform.py"
STATE = Path(os.environ.get("MICO_PLATFORM_STATE", ROOT / ".platform"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Platform:
    kubeconfig: Path
    bin_dir: Path
    kafka_bootstrap: str
    prometheus_url: str
    prometheus_targets: Path
    git_base_url: str
    git_root: Path

    def kubectl(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
        )


def _read_env(path: Path) -> dict[str, str]:
    pairs = re.findall(r'^export (\w+)="(.*)"$', path.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def _status() -> str:
    return subprocess.run(
        [sys.executable, str(PLATFORM), "status"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    started_here = "stopped" in _status()
    subprocess.run([sys.executable, str(PLATFORM), "up"], check=True)
    env = _read_env(STATE / "env")
    yield Platform(
        kubeconfig=Path(env["KUBECONFIG"]),
        bin_dir=Path(env["MICO_PLATFORM_BIN"]),
        kafka_bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"],
        prometheus_url=env["PROMETHEUS_URL"],
        prometheus_targets=Path(env["PROMETHEUS_TARGETS_DIR"]),
        git_base_url=env["GIT_BASE_URL"],
        git_root=Path(env["GIT_ROOT"]),
    )
    if started_here and not os.environ.get("MICO_PLATFORM_KEEP"):
        subprocess.run([sys.executable, str(PLATFORM), "down"], check=True)


@pytest.fixture(scope="session")
def kube(platform: Platform) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(platform.kubeconfig))


def _slug(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _slug(request)
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def kafka_prefix(platform: Platform) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient

    prefix = f"t-{uuid.uuid4().hex[:10]}."
    yield prefix
    admin = AdminClient({"bootstrap.servers": platform.kafka_bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result()


@pytest.fixture
def git_repo(platform: Platform, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty bare repository on the platform's git daemon."""
    name = f"{_slug(request)}.git"
    path = platform.git_root / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    yield f"{platform.git_base_url}/{name}"
    shutil.rmtree(path, ignore_errors=True)
