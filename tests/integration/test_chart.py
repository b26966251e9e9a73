"""The Helm chart on the platform's apiserver (v1.36): a server-side dry run of every ci/ values
file, Pod Security `restricted` on the pod template, `helm install --wait` onto the KWOK nodes,
`helm upgrade`, `helm uninstall` leaving nothing behind, and what the chart's ServiceAccount may
and may not do (`kubectl auth can-i`), derived from reconciler/cluster/permissions.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cluster.permissions import RULES, Scope
from tests.chart.chart import CHART, CI_VALUES, ci_id, helm, render
from tests.integration.conftest import Platform
from tests.integration.test_platform import eventually

pytestmark = pytest.mark.integration

CRD = Path(__file__).with_name("servicemonitor-crd.yaml")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
RELEASE = "mr"
FULLNAME = f"{RELEASE}-mico-reconciler"  # the chart's fullname of this release
REPO = "git://git.example.com/team/mico-config.git"


def _check(done: Any, what: str) -> str:
    assert done.returncode == 0, f"{what}: {done.stderr or done.stdout}"
    return str(done.stdout)


@dataclass(frozen=True)
class Namespaces:
    release: str
    workload: str
    build: str

    def all(self) -> tuple[str, str, str]:
        return (self.release, self.workload, self.build)


def _create_namespaces(platform: Platform, prefix: str) -> Namespaces:
    suffix = uuid.uuid4().hex[:6]
    made = Namespaces(f"{prefix}-rel-{suffix}", f"{prefix}-apps-{suffix}", f"{prefix}-builds-{suffix}")
    for name in made.all():
        _check(platform.kubectl("create", "namespace", name), f"create namespace {name}")
    labels = [f"{k}={v}" for k, v in RESTRICTED.items()]
    _check(platform.kubectl("label", "namespace", made.release, *labels), "label the release namespace")
    return made


def _delete_namespaces(platform: Platform, made: Namespaces) -> None:
    platform.kubectl("delete", "namespace", *made.all(), "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="module")
def service_monitor_crd(platform: Platform) -> None:
    _check(platform.kubectl("apply", "--server-side", "-f", str(CRD)), "apply the ServiceMonitor CRD")
    _check(
        platform.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ),
        "the ServiceMonitor CRD",
    )


@pytest.fixture(scope="module")
def helm_env(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """helm against the platform, with its own config, cache and data directories."""
    home = tmp_path_factory.mktemp("helm")
    return {
        "KUBECONFIG": str(platform.kubeconfig),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


@pytest.fixture(scope="module")
def dry_run_namespaces(platform: Platform) -> Iterator[Namespaces]:
    made = _create_namespaces(platform, "chart-dry")
    yield made
    _delete_namespaces(platform, made)


# --- every ci/ values file, dry-run on the apiserver -----------------------------------------


def test_pod_security_restricted_is_enforced_here(platform: Platform, dry_run_namespaces: Namespaces) -> None:
    """The control for the test below: a root pod is refused in the restricted namespace."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": dry_run_namespaces.release},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
    }
    done = platform.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(pod))
    assert done.returncode != 0
    assert "violates PodSecurity" in done.stderr


@pytest.mark.usefixtures("service_monitor_crd")
@pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_id)
def test_server_side_dry_run(platform: Platform, dry_run_namespaces: Namespaces, values_file: Path) -> None:
    """Every rendered object is accepted by the apiserver (strict field validation, admission),
    and the pod the Deployment would create passes Pod Security `restricted`."""
    ns = dry_run_namespaces
    objects = render(
        values_file,
        release=RELEASE,
        namespace=ns.release,
        extra=("--set", f"namespace={ns.workload}", "--set", f"buildNamespace={ns.build}"),
    )
    applied = platform.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=chart-test",
        "--validate=strict",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(objects),
    )
    _check(applied, f"dry run of {values_file.name}")
    assert applied.stdout.count("(server dry run)") == len(objects)

    deployment = next(o for o in objects if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "pod-security-probe", "namespace": ns.release},
        # the ServiceAccount is not created by a dry run; Pod Security does not depend on it
        "spec": {k: v for k, v in template["spec"].items() if k != "serviceAccountName"},
    }
    created = platform.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(pod))
    _check(created, f"the pod of {values_file.name} in a restricted namespace")
    assert "violates PodSecurity" not in created.stderr


# --- install, can-i, upgrade, uninstall ------------------------------------------------------


@dataclass(frozen=True)
class Release:
    namespaces: Namespaces
    env: dict[str, str]


@pytest.fixture(scope="module")
def release(platform: Platform, helm_env: dict[str, str]) -> Iterator[Release]:
    made = _create_namespaces(platform, "chart")
    started = time.monotonic()
    helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        made.release,
        "--set",
        f"repo={REPO}",
        "--set",
        f"namespace={made.workload}",
        "--set",
        f"buildNamespace={made.build}",
        "--wait",
        "--timeout",
        "120s",
        env=helm_env,
    )
    print(f"helm install --wait: {time.monotonic() - started:.1f} s")
    yield Release(made, helm_env)
    helm("uninstall", RELEASE, "--namespace", made.release, "--wait", check=False, env=helm_env)
    _delete_namespaces(platform, made)


def _get(platform: Platform, *args: str) -> dict[str, Any]:
    return json.loads(_check(platform.kubectl("get", "-o", "json", *args), f"get {args}"))


def test_install_is_available_on_the_kwok_nodes(platform: Platform, release: Release) -> None:
    ns = release.namespaces.release
    deployment = _get(platform, "deployment", FULLNAME, "-n", ns)
    assert deployment["status"].get("availableReplicas") == 1
    pods = _get(platform, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert len(pods) == 1
    (pod,) = pods
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["serviceAccountName"] == FULLNAME
    # admitted under `restricted` (the namespace enforces it), with the chart's defaults
    labels = _get(platform, "namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    service = _get(platform, "service", FULLNAME, "-n", ns)
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]


def _can_i(
    platform: Platform, account: str, verb: str, what: str, namespace: str | None, *extra: str
) -> bool:
    where = ["-n", namespace] if namespace else []
    done = platform.kubectl("auth", "can-i", verb, what, *where, f"--as={account}", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def _resource(group: str, resource: str) -> tuple[str, list[str]]:
    """`kubectl auth can-i`'s TYPE (resource.group) and --subresource for a rule's resource."""
    plural, _, sub = resource.partition("/")
    name = f"{plural}.{group}" if group else plural
    return name, [f"--subresource={sub}"] if sub else []


def test_service_account_can_exactly_what_permissions_grants(platform: Platform, release: Release) -> None:
    ns = release.namespaces
    account = f"system:serviceaccount:{ns.release}:{FULLNAME}"
    namespaces = {Scope.WORKLOAD: ns.workload, Scope.BUILD: ns.build, Scope.LEASE: ns.release}
    table: list[tuple[str, str, str, bool, bool]] = []  # verb, what, namespace, expected, actual

    def row(verb: str, what: str, namespace: str | None, expected: bool, *extra: str) -> None:
        actual = _can_i(platform, account, verb, what, namespace, *extra)
        table.append(
            (verb, what + "".join(f" {e}" for e in extra), namespace or "(cluster)", expected, actual)
        )

    for rule in RULES:
        if rule.strimzi_only:  # installed with topics: admin
            row("create", _resource(rule.api_group, rule.resource)[0], namespaces[rule.scope], False)
            continue
        what, extra = _resource(rule.api_group, rule.resource)
        for verb in rule.verbs:
            if rule.lease_only:
                row(verb, f"{what}/{FULLNAME}", namespaces[rule.scope], True, *extra)
                row(verb, f"{what}/another-lease", namespaces[rule.scope], False, *extra)
            else:
                row(verb, what, namespaces[rule.scope], True, *extra)
    for namespace in (*ns.all(), "default", "kube-system"):  # no Secrets anywhere
        for verb in ("get", "list", "watch", "create"):
            row(verb, "secrets", namespace, False)
    for verb, what, namespace, *extra in [
        ("list", "deployments.apps", "default"),  # another namespace
        ("create", "deployments.apps", ns.build),  # workload kinds only in the workload namespace
        ("create", "jobs.batch", ns.workload),  # builds only in the build namespace
        ("create", "jobs.batch", "default"),
        ("update", "deployments.apps", ns.workload),  # server-side apply is patch, not update
        ("delete", "pods", ns.workload),
        ("create", "pods", ns.build),
        ("create", "pods", ns.workload, "--subresource=exec"),
        ("get", "pods", ns.workload, "--subresource=log"),
        ("delete", "leases.coordination.k8s.io", ns.release),
        ("list", "leases.coordination.k8s.io", ns.release),
        ("create", "leases.coordination.k8s.io", ns.workload),  # the Lease lives in the release namespace
        ("get", "configmaps", ns.release),
        ("*", "*", ns.workload),
        ("list", "namespaces", None),  # nothing cluster-scoped
        ("create", "namespaces", None),
        ("list", "nodes", None),
        ("list", "clusterroles.rbac.authorization.k8s.io", None),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
        ("create", "rolebindings.rbac.authorization.k8s.io", ns.workload),  # no escalation
        ("list", "deployments.apps", None, "--all-namespaces"),
    ]:
        row(verb, what, namespace, False, *extra)

    print(
        "\nverb    resource                                         namespace                 expected actual"
    )
    for verb, what, namespace, expected, actual in table:
        answers = f"{'yes' if expected else 'no':8} {'yes' if actual else 'no'}"
        print(f"{verb:7} {what:48} {namespace:25} {answers}{'' if expected == actual else '   <-- WRONG'}")
    wrong = [r for r in table if r[3] != r[4]]
    assert not wrong, f"can-i differs from permissions.RULES: {wrong}"


@pytest.mark.usefixtures("kafkatopic_crd")  # `can-i` resolves kafkatopics.kafka.strimzi.io by discovery
def test_upgrade_changes_the_pod_and_the_rules(platform: Platform, release: Release) -> None:
    ns = release.namespaces
    before = _get(platform, "deployment", FULLNAME, "-n", ns.release)["metadata"]["generation"]
    account = f"system:serviceaccount:{ns.release}:{FULLNAME}"
    assert not _can_i(platform, account, "create", "kafkatopics.kafka.strimzi.io", ns.workload)
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        ns.release,
        "--reuse-values",
        "--set",
        "topics=strimzi",
        "--set",
        "logLevel=debug",
        "--wait",
        "--timeout",
        "120s",
        env=release.env,
    )
    deployment = _get(platform, "deployment", FULLNAME, "-n", ns.release)
    assert deployment["metadata"]["generation"] > before
    assert deployment["status"].get("updatedReplicas") == 1
    assert deployment["status"].get("availableReplicas") == 1
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MICO_TOPICS"] == "strimzi"
    assert env["MICO_LOG_LEVEL"] == "debug"
    assert _can_i(platform, account, "create", "kafkatopics.kafka.strimzi.io", ns.workload)
    history = json.loads(helm("history", RELEASE, "-n", ns.release, "-o", "json", env=release.env).stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]


@pytest.fixture
def state_volume(platform: Platform, release: Release) -> Iterator[str]:
    """A PersistentVolume bound in advance to the chart's claim (the platform has no provisioner)."""
    name = f"chart-state-{uuid.uuid4().hex[:6]}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": f"/tmp/{name}"},  # never mounted: KWOK runs no containers
            "claimRef": {"namespace": release.namespaces.release, "name": f"{FULLNAME}-state"},
        },
    }
    _check(platform.kubectl("create", "-f", "-", input_text=json.dumps(volume)), "create the PV")
    yield name
    platform.kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found")


def test_upgrade_to_a_state_claim_recreates_the_pod(
    platform: Platform, release: Release, state_volume: str
) -> None:
    ns = release.namespaces.release
    old = {p["metadata"]["name"] for p in _get(platform, "pods", "-n", ns)["items"]}
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "persistence.enabled=true",
        "--set",
        "persistence.storageClass=-",
        "--wait",
        "--timeout",
        "120s",
        env=release.env,
    )
    deployment = _get(platform, "deployment", FULLNAME, "-n", ns)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["status"].get("availableReplicas") == 1
    claim = _get(platform, "pvc", f"{FULLNAME}-state", "-n", ns)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["volumeName"] == state_volume
    pods = [
        p for p in _get(platform, "pods", "-n", ns)["items"] if not p["metadata"].get("deletionTimestamp")
    ]
    (pod,) = [p for p in pods if p["metadata"]["name"] not in old]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-state"


def _leftovers(platform: Platform, namespace: str, kinds: str) -> list[str]:
    """Every object in the namespace but what Kubernetes puts into each namespace itself."""
    names = _check(platform.kubectl("get", kinds, "-n", namespace, "-o", "name"), f"list {namespace}")
    defaults = {"serviceaccount/default", "configmap/kube-root-ca.crt"}
    return [n for n in names.split() if n not in defaults]


def test_uninstall_leaves_nothing_behind(platform: Platform, release: Release) -> None:
    ns = release.namespaces
    rendered = render(
        CHART / "ci" / "default-values.yaml",
        release=RELEASE,
        namespace=ns.release,
        extra=("--set", f"namespace={ns.workload}", "--set", f"buildNamespace={ns.build}"),
    )
    assert {o["metadata"]["namespace"] for o in rendered} == set(ns.all())
    helm("uninstall", RELEASE, "--namespace", ns.release, "--wait", "--timeout", "120s", env=release.env)
    # every namespaced kind that can be listed, but events (which record what happened)
    listed = _check(
        platform.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name"), "api-resources"
    )
    kinds = ",".join(k for k in listed.split() if k not in ("events", "events.events.k8s.io"))
    for namespace in ns.all():
        # pods and ReplicaSets go through the garbage collector after helm's delete
        eventually(
            lambda n=namespace: _leftovers(platform, n, kinds) == [], timeout=60, what=f"an empty {namespace}"
        )
    for namespace in ns.all():
        assert _leftovers(platform, namespace, kinds) == [], namespace
        _get(platform, "namespace", namespace)  # the namespaces themselves stay
