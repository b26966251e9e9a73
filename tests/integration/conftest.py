"""Fixtures on the real local platform (hack/platform/platform.py).

The platform starts once per test run, or a running one is reused; each test gets its own
namespace, Kafka topic prefix and git repository, removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from reconciler.cluster.cache import ObjectCache
from reconciler.cluster.client import connect
from reconciler.cluster.permissions import RULES, Scope, granted
from reconciler.cluster.resources import POD
from reconciler.engine import SELECTOR, Engine, Options, observed
from reconciler.plan import tracking_id
from reconciler.render import Settings
from reconciler.source.git import GitSource
from reconciler.store import Store

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
    #: The same repositories over https (TLS from `git_https_ca`, basic authentication) and ssh
    #: (deploy keys from `deploy_key`, the server's host key in `git_ssh_known_hosts`).
    git_https_url: str
    git_https_ca: Path
    git_ssh_url: str
    git_ssh_known_hosts: Path

    def git_user(self, name: str) -> Path:
        """A new token for the https user `name` (its old one stops working); the token's file."""
        return Path(platform_command("git-user", name))

    def deploy_key(self, repo: str) -> Path:
        """The private key that reads `repo` (a name under git_root) over ssh, made on first use."""
        return Path(platform_command("deploy-key", repo))

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


def platform_command(*args: str) -> str:
    """`platform.py ARGS` (stop a part, `up` again, a git user or deploy key): what it printed."""
    return subprocess.run(
        [sys.executable, str(PLATFORM), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    # started here only when it was down: a part stopped on purpose (a benchmark stops the
    # controller-manager) must not make the tests take the whole platform down after them
    started_here = (
        re.search(r"^kube-apiserver\s+stopped", platform_command("status"), flags=re.MULTILINE) is not None
    )
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
        git_https_url=env["GIT_HTTPS_URL"],
        git_https_ca=Path(env["GIT_HTTPS_CA"]),
        git_ssh_url=env["GIT_SSH_URL"],
        git_ssh_known_hosts=Path(env["GIT_SSH_KNOWN_HOSTS"]),
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


BACKEND = "spring-boot-realworld-example-app"


@dataclass
class ConfigRepo:
    url: str
    work: Path

    def push(self, data: Any, message: str = "change") -> str:
        return self.push_files({"mico.yaml": data}, message)

    def push_files(self, files: dict[str, Any], message: str = "change") -> str:
        """Each file's data (or text) written, committed and pushed; other files stay."""
        for name, data in files.items():
            (self.work / name).write_text(
                yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data
            )
        git = ["git", "-C", str(self.work), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)
        subprocess.run([*git, "push", "-q", "-f", self.url, "HEAD:main"], check=True)
        return subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()


@pytest.fixture
def config_repo(git_repo: str, tmp_path: Path) -> ConfigRepo:
    work = tmp_path / "config"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    return ConfigRepo(git_repo, work)


@pytest.fixture
def make_engine(
    platform: Platform, config_repo: ConfigRepo, namespace: str, tmp_path: Path
) -> Callable[..., Engine]:
    caches: list[ObjectCache] = []
    made: list[Engine] = []

    def make(
        path: str = ".",
        state: str = "state.db",
        *,
        watch: bool = False,
        settings: dict[str, Any] | None = None,
        kubeconfig: Path | None = None,
        **options: Any,
    ) -> Engine:
        api, counter = connect(str(kubeconfig or platform.kubeconfig))
        rendering = Settings(**{**kafka_settings(platform, namespace), **(settings or {})})
        source = GitSource(config_repo.url, path=path, workdir=tmp_path / f"repo-{state}")
        chosen = Options(
            settings=rendering,
            **options,
            tracking=tracking_id(repo=config_repo.url, path=path, namespace=namespace),
        )
        objects = None
        if watch:
            objects = ObjectCache(api, [*observed(chosen), (POD, namespace)], SELECTOR)
            objects.start()
            caches.append(objects)
        engine = Engine(
            source=source,
            api=api,
            counter=counter,
            store=Store(tmp_path / state),
            objects=objects,
            options=chosen,
        )
        made.append(engine)
        return engine

    yield make
    for cache in caches:
        cache.stop()
    for engine in made:  # what the code asked of the apiserver, against what the chart grants
        strimzi = engine.options.topics == "strimzi"
        ungranted = [
            r
            for r in engine.counter.requests
            if not granted(r, dict.fromkeys(Scope, namespace), strimzi=strimzi)
        ]
        assert not ungranted, (
            f"not in reconciler/cluster/permissions.py (the chart's RBAC): {sorted(ungranted)}"
        )


def deployments(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    return {d.metadata.name: d for d in client.AppsV1Api(kube).list_namespaced_deployment(namespace).items}


def identities(kube: client.ApiClient, namespace: str) -> dict[str, tuple[str, int]]:
    """Each Deployment's uid and generation: both unchanged means neither made again nor changed."""
    return {name: (d.metadata.uid, d.metadata.generation) for name, d in deployments(kube, namespace).items()}


#: Written by the Deployment controller some time after a create, never by the reconciler.
CONTROLLER_ANNOTATIONS = {"deployment.kubernetes.io/revision"}


def versions(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    """What a write would change of every Deployment, Service and Job: generation (spec),
    labels and annotations; status and controller annotations are left out."""
    apps, core, batch = client.AppsV1Api(kube), client.CoreV1Api(kube), client.BatchV1Api(kube)
    objects = [
        *apps.list_namespaced_deployment(namespace).items,
        *core.list_namespaced_service(namespace).items,
        *batch.list_namespaced_job(namespace).items,
    ]
    return {
        f"{type(o).__name__}/{o.metadata.name}": (
            o.metadata.generation,
            o.metadata.labels,
            {k: v for k, v in (o.metadata.annotations or {}).items() if k not in CONTROLLER_ANNOTATIONS},
        )
        for o in objects
    }


def backend(kube: client.ApiClient, namespace: str) -> Any:
    return next(d for name, d in deployments(kube, namespace).items() if name.startswith(BACKEND))


def kafka_settings(platform: Platform, namespace: str) -> dict[str, Any]:
    """Workloads and builds in the test's namespace; Kafka on the platform, error topics per test."""
    return {
        "namespace": namespace,
        "build_namespace": namespace,
        "kafka_bootstrap_servers": platform.kafka_bootstrap,
        "invalid_message_topic": f"{namespace}.InvalidMessage",
        "dead_letter_topic": f"{namespace}.DeadLetter",
        "test_message_output_topic": f"{namespace}.TestMessagesOutput",
    }


def reconciler_command(
    verb: str, platform: Platform, repo: str, namespace: str, *, state_db: Path, workdir: Path
) -> list[str]:
    """`mico-reconciler run|sync` against the platform, with the settings of `kafka_settings`."""
    options = [f"--{k.replace('_', '-')}={v}" for k, v in kafka_settings(platform, namespace).items()]
    return [
        sys.executable,
        "-m",
        "reconciler",
        *verb.split(),
        "--repo",
        repo,
        "--kubeconfig",
        str(platform.kubeconfig),
        *options,
        "--state-db",
        str(state_db),
        "--workdir",
        str(workdir),
    ]


def sync_command(platform: Platform, repo: str, namespace: str, state_dir: Path) -> list[str]:
    return reconciler_command(
        "sync --once",
        platform,
        repo,
        namespace,
        state_db=state_dir / "cli.db",
        workdir=state_dir / "cli-repo",
    )


# -- a daemon process and its HTTP endpoints --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    url: str
    state_db: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code

    def runs(self) -> list[dict[str, Any]]:
        return json.loads(self.get("/api/history?limit=100")[1])


def listening(daemon: Daemon) -> bool:
    try:
        return daemon.get("/healthz")[0] == 200
    except OSError:
        return False


def ready(daemon: Daemon) -> bool:
    try:
        return daemon.get("/readyz")[0] == 200 and bool(daemon.runs())
    except OSError:
        return False


#: The webhook secret of the daemons `start_daemon` starts.
SECRET = b"s3cret-for-tests"


@pytest.fixture
def start_daemon(
    platform: Platform, config_repo: ConfigRepo, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []
    (tmp_path / "webhook-secret").write_bytes(SECRET)

    def start(
        state: str = "daemon.db",
        *extra: str,
        wait_for_run: bool = True,
        repo: str | None = None,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> Daemon:
        """`repo`: another URL of the config repository (https, ssh); `env`: more variables;
        `prefix`: a command the daemon runs under (strace)."""
        port = free_port()
        log = open(tmp_path / f"{state}.log", "ab")  # noqa: SIM115 - closed with the process
        command = reconciler_command(
            "run",
            platform,
            repo or config_repo.url,
            namespace,
            state_db=tmp_path / state,
            workdir=tmp_path / f"{state}-repo",
        )
        process = subprocess.Popen(
            [
                *prefix,
                *command,
                "--listen",
                f"127.0.0.1:{port}",
                "--interval",
                "3600",
                "--webhook-secret-file",
                str(tmp_path / "webhook-secret"),
                *extra,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
            start_new_session=bool(prefix),  # ended as a group: strace leaves its tracee on SIGTERM
        )
        daemon = Daemon(process, f"http://127.0.0.1:{port}", tmp_path / state)
        started.append(daemon)
        from tests.integration.test_platform import eventually

        eventually(
            lambda: ready(daemon) if wait_for_run else listening(daemon),
            timeout=60,
            what="the daemon to be ready",
        )
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            _stop(daemon.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon. Under a prefix (its own process group) the daemon is the prefix's
    child: strace, signalled itself, would detach and leave it running. Under strace a signal
    may reach a thread that is not the main one, which Python then never sees: it is sent again
    until the daemon stops, and the group killed should it not stop at all."""
    pid = process.pid
    prefixed = os.getpgid(pid) == pid
    targets = Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if prefixed else [str(pid)]
    try:
        for _ in range(6):
            for target in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(target), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
                return
        process.wait(timeout=1)
    finally:
        if prefixed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def token_kubeconfig(platform: Platform, kube: client.ApiClient, namespace: str, account: str) -> str:
    """A kubeconfig for a ServiceAccount: the platform's server and CA, a TokenRequest token."""
    core = client.CoreV1Api(kube)
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    admin = yaml.safe_load(platform.kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": account,
        "clusters": [
            {
                "name": "platform",
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority-data": cluster["certificate-authority-data"],
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "platform", "user": account}}],
    }
    return yaml.safe_dump(config)


@pytest.fixture(scope="session")
def kafkatopic_crd(platform: Platform) -> None:
    """Strimzi's KafkaTopic CRD (no operator runs): KafkaTopics can be applied, and RBAC on them checked."""
    applied = platform.kubectl(
        "apply", "--server-side", "-f", str(Path(__file__).with_name("kafkatopic-crd.yaml"))
    )
    assert applied.returncode == 0, applied.stderr
    established = platform.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/kafkatopics.kafka.strimzi.io"
    )
    assert established.returncode == 0, established.stderr


def grant(kube: client.ApiClient, namespace: str, account: str) -> None:
    """The reconciler's Roles, built from `RULES` (all three scopes in the test's namespace;
    Strimzi's rules are not needed in admin topic mode), bound to the ServiceAccount."""
    rbac = client.RbacAuthorizationV1Api(kube)
    for scope in Scope:
        rules = [
            {"apiGroups": [rule.api_group], "resources": [rule.resource], "verbs": list(rule.verbs)}
            for rule in RULES
            if rule.scope == scope and not rule.strimzi_only
        ]
        name = f"mico-reconciler-{scope.value}"
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            },
        )
