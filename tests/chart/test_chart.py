"""Static tests of charts/mico-reconciler, no cluster needed: for every ci/*-values.yaml,
`helm lint --strict`, `helm template` for Kubernetes 1.36 validated against the 1.36 API
schemas (kubernetes-validate, bundled, offline), the helm-unittest suites, and the chart's RBAC
equal to reconciler/cluster/permissions.py: a verb the code starts using, or a rule the chart
grants beyond it, fails here. helm comes from `make chart-tools`; without it these tests fail.
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from reconciler import cli
from reconciler.cluster.permissions import RULES, Scope
from reconciler.render import settings as render_settings
from reconciler.render.settings import Settings
from tests.chart.chart import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    RELEASE_NAMESPACE,
    ROOT,
    ci_id,
    env_of,
    helm,
    render,
    values,
)

each_ci_values = pytest.mark.parametrize("values_file", CI_VALUES, ids=ci_id)

#: Objects the chart may render; all but the two cluster-RBAC kinds are namespaced.
NAMESPACED = {
    "ServiceAccount",
    "ConfigMap",
    "Role",
    "RoleBinding",
    "Deployment",
    "Service",
    "PersistentVolumeClaim",
    "ServiceMonitor",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Ingress",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
#: Daemon flags the chart sets itself (a pod needs them so), not values.
CHART_FIXED = {
    "listen": "MICO_LISTEN",
    "state_db": "MICO_STATE_DB",
    "workdir": "MICO_WORKDIR",
    "lease_namespace": "MICO_LEASE_NAMESPACE",
}
#: Files that come from existing Secrets (values gitCredentials, sshKey, webhookSecret) or from the
#: chart's trust ConfigMap (sshKey.knownHosts, gitCA: the files' contents are the values).
SECRET_FILES = {"ssh_key_file", "webhook_secret_file", "ssh_known_hosts", "git_ca_file"}
#: Flags whose value sits beside the credentials it belongs to.
NESTED = {"ssh_accept_new_host_keys": ("sshKey", "acceptNewHostKeys")}
#: Never set in a pod: the in-cluster config is used.
NEVER = {"kubeconfig"}
#: Values whose "" stands for something the chart knows: the connector runs from the chart's own image.
CHART_DERIVED = {"connector_image"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MICO_* of the developer's shell reaches the daemon's parser."""
    import os

    for name in [n for n in os.environ if n.startswith("MICO_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _run_options() -> dict[str, Any]:
    """`mico-reconciler run`'s options by dest (parsed with no MICO_* in the environment)."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    run = commands.choices["run"]  # type: ignore[index]
    return {a.dest: a for a in run._actions if a.option_strings and a.dest != "help"}


# --- the chart as a package -----------------------------------------------------------------


def test_the_ci_values_files_cover_the_main_cases() -> None:
    assert {ci_id(p) for p in CI_VALUES} >= {"default", "cluster-rbac", "strimzi", "full"}


def test_chart_and_app_version_are_the_projects() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == project
    assert chart["kubeVersion"]


def test_the_kube_version_constraint_is_enforced() -> None:
    old = helm(
        "template", "r", str(CHART), "--kube-version", "1.24.0", "--set", "repo=git://g/x.git", check=False
    )
    assert old.returncode != 0
    assert "kubeVersion" in old.stderr


@each_ci_values
def test_helm_lint_strict(values_file: Path) -> None:
    out = helm("lint", "--strict", str(CHART), "-f", str(values_file), "--kube-version", KUBE_VERSION)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_helm_unittest_suites_pass() -> None:
    out = helm("unittest", "--strict", "--color=false", str(CHART))
    assert "Test Suites:" in out.stdout
    assert " failed" not in out.stdout.split("Test Suites:")[1].split("\n")[0]


# --- rendered objects ------------------------------------------------------------------------


@each_ci_values
def test_rendered_objects_are_valid_kubernetes_1_36(values_file: Path) -> None:
    crd = yaml.safe_load((ROOT / "tests" / "integration" / "servicemonitor-crd.yaml").read_text())
    service_monitor = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    objects = render(values_file)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service"}
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            jsonschema.validate(obj, service_monitor)
        else:
            # strict: unknown fields are errors, as in `kubectl apply --validate=strict`
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@each_ci_values
def test_no_secret_objects_and_no_secret_access(values_file: Path) -> None:
    for obj in render(values_file):
        assert obj["kind"] != "Secret", "credentials come from existing Secrets, never from values"
        for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
            assert "secrets" not in rule["resources"], (obj["metadata"]["name"], rule)
            assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule


@each_ci_values
def test_nothing_cluster_scoped_unless_asked(values_file: Path) -> None:
    cluster = values(values_file)["rbac"]["scope"] == "cluster"
    for obj in render(values_file):
        kind, meta = obj["kind"], obj["metadata"]
        if kind in CLUSTER_SCOPED:
            assert cluster, f"{kind} {meta['name']} under rbac.scope namespaced"
            assert "namespace" not in meta
        else:
            assert kind in NAMESPACED, kind
            assert meta.get("namespace"), f"{kind} {meta['name']} has no namespace"


# --- RBAC = permissions.RULES ----------------------------------------------------------------


def test_rbac_rules_file_is_generated_from_permissions() -> None:
    spec = importlib.util.spec_from_file_location("rbac_rules", ROOT / "hack" / "chart" / "rbac_rules.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (CHART / "files" / "rbac-rules.yaml").read_text()
    assert committed == module.text(), "permissions.py changed: run `make chart-rbac`"


Grant = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]  # ns, group, resource, verbs, names


def _expected(namespaces: dict[Scope, str], lease: str, *, strimzi: bool, cluster: bool) -> Counter[Grant]:
    return Counter(
        (
            "" if cluster else namespaces[rule.scope],
            rule.api_group,
            rule.resource,
            rule.verbs,
            (lease,) if rule.lease_only else (),
        )
        for rule in RULES
        if strimzi or not rule.strimzi_only
    )


def _granted(objects: list[dict[str, Any]]) -> Counter[Grant]:
    grants: Counter[Grant] = Counter()
    for obj in objects:
        if obj["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in obj["rules"]:
            assert len(rule["apiGroups"]) == 1, rule
            assert len(rule["resources"]) == 1, rule
            grants[
                (
                    obj["metadata"].get("namespace", ""),
                    rule["apiGroups"][0],
                    rule["resources"][0],
                    tuple(rule["verbs"]),
                    tuple(rule.get("resourceNames", ())),
                )
            ] += 1
    return grants


@each_ci_values
def test_rendered_rbac_is_exactly_permissions_rules(values_file: Path) -> None:
    """Scope by scope in the namespaces the daemon is configured for (its env), with the Lease
    by the name the daemon uses; strimzi rules only in strimzi mode."""
    chosen = values(values_file)
    objects = render(values_file)
    env = env_of(objects)
    assert env["MICO_NAMESPACE"] == chosen["namespace"]
    assert env["MICO_BUILD_NAMESPACE"] == chosen["buildNamespace"]
    assert env["MICO_LEASE_NAMESPACE"] == RELEASE_NAMESPACE
    namespaces = {
        Scope.WORKLOAD: env["MICO_NAMESPACE"],
        Scope.BUILD: env["MICO_BUILD_NAMESPACE"],
        Scope.LEASE: env["MICO_LEASE_NAMESPACE"],
    }
    expected = _expected(
        namespaces,
        env["MICO_LEASE_NAME"],
        strimzi=env["MICO_TOPICS"] == "strimzi",
        cluster=chosen["rbac"]["scope"] == "cluster",
    )
    assert _granted(objects) == expected


@each_ci_values
def test_every_role_is_bound_to_the_deployments_service_account(values_file: Path) -> None:
    objects = render(values_file)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == len([o for o in objects if o["kind"] in ("Role", "ClusterRole")])
    for binding in bindings:
        ref = binding["roleRef"]
        assert (ref["kind"], binding["metadata"].get("namespace"), ref["name"]) in roles
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": RELEASE_NAMESPACE}
        ]


def test_strimzi_rules_only_in_strimzi_mode() -> None:
    strimzi = [r for r in RULES if r.strimzi_only]
    assert strimzi, "permissions.RULES has no strimzi-only rule any more: update this test"
    default = _granted(render(CHART / "ci" / "default-values.yaml"))
    assert not [g for g in default if g[2] == strimzi[0].resource]


# --- values = the daemon's settings ----------------------------------------------------------


def test_every_daemon_flag_is_a_value_with_the_daemons_default(clean_env: pytest.MonkeyPatch) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for dest, action in _run_options().items():
        if dest in CHART_FIXED or dest in SECRET_FILES or dest in NEVER:
            continue
        if dest in NESTED:
            group, key = NESTED[dest]
            assert defaults[group][key] == action.default, f"{group}.{key} is not the daemon's default"
            assert key in schema["properties"][group]["properties"], f"{group}.{key} is not in the schema"
            continue
        name = _camel(dest)
        assert name in defaults, f"--{dest.replace('_', '-')} has no value {name} in values.yaml"
        assert name in schema["properties"], f"{name} is not in values.schema.json"
        daemon = "" if action.default is None else action.default
        if dest in CHART_DERIVED:
            assert defaults[name] == "", f"{name}: the chart's default is derived, not {defaults[name]!r}"
            continue
        assert defaults[name] == daemon, f"{name}: {defaults[name]!r} is not the daemon's {daemon!r}"


def test_the_connector_runs_from_the_charts_own_image(clean_env: pytest.MonkeyPatch) -> None:
    """By default the chart's image, which is the daemon's own default; with a digest, pinned by it."""
    connector = env_of(render(CHART / "ci" / "default-values.yaml"))["MICO_CONNECTOR_IMAGE"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert connector == Settings().connector_image == f"localhost/mico-reconciler:{app_version}"
    digest = "sha256:" + "b" * 64
    objects = render(
        CHART / "ci" / "default-values.yaml",
        extra=("--set", "image.repository=registry.example.com/mico", "--set", f"image.digest={digest}"),
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert (
        env_of(objects)["MICO_CONNECTOR_IMAGE"]
        == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert env_of(objects)["MICO_CONNECTOR_IMAGE"].endswith("@" + digest)


@pytest.mark.parametrize(
    "image",
    [
        "image.tag=latest",
        "image.tag=_v1",
        "image.tag=" + "v" * 64,
        "image.repository=Registry.example.com/Team/x",
    ],
)
def test_an_image_the_connectors_could_not_run_is_refused_by_the_schema(image: str) -> None:
    """The connectors run the chart's own image: what the daemon would refuse as one fails install."""
    refused = helm(
        "template",
        "r",
        str(CHART),
        "-f",
        str(CHART / "ci" / "default-values.yaml"),
        "--set",
        image,
        check=False,
    )
    assert refused.returncode != 0
    assert "values don't meet the specifications of the schema" in refused.stderr


def test_every_daemon_flag_reaches_the_pod(clean_env: pytest.MonkeyPatch) -> None:
    """With everything set (ci/full-values.yaml), every flag but --kubeconfig is an env var;
    trust on first use, which pinned host keys exclude, is set on its own."""
    env = env_of(render(CHART / "ci" / "full-values.yaml"))
    first_use = env_of(
        render(
            CHART / "ci" / "full-values.yaml",
            extra=("--set", "sshKey.knownHosts=", "--set", "sshKey.acceptNewHostKeys=true"),
        )
    )
    assert first_use["MICO_SSH_ACCEPT_NEW_HOST_KEYS"] == "true"
    assert "MICO_SSH_KNOWN_HOSTS" not in first_use
    for dest in _run_options():
        variable = f"MICO_{dest.upper()}"
        if dest in NESTED:
            assert variable not in env, variable
            continue
        assert (variable in env) == (dest not in NEVER), variable
    assert {"MICO_GIT_USERNAME_FILE", "MICO_GIT_PASSWORD_FILE"} <= env.keys()
    assert not {"MICO_GIT_USERNAME", "MICO_GIT_PASSWORD", "MICO_WEBHOOK_SECRET"} & env.keys()


@each_ci_values
def test_the_daemon_accepts_the_rendered_environment(
    values_file: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The env the chart renders, parsed by `mico-reconciler run` itself: no setting refused."""
    env = env_of(render(values_file))
    for name, value in env.items():
        clean_env.setenv(name, value)
    args, extra = cli.build_parser().parse_known_args(["run"])
    assert not extra
    refused = [v.message for v in vars(args).values() if isinstance(v, cli._EnvError)]
    assert not refused
    cli._settings(args)  # the render settings' own checks
    assert args.listen == ("0.0.0.0", values(values_file)["service"]["port"])
    assert args.kubeconfig is None


# Strings and integers around the forms the daemon accepts for its render settings.
_PROBES: list[object] = [
    "", "x", "UPPER", "a b", "-a", "a-", "a" * 63, "a" * 64, "a" * 254, "ns.example",
    "http://gw.example.com", "https://gw.example.com:8080/p", "http://u:p@h", "ftp://h",
    "http://h:0", "http://h:65536", "host:9092", "host:0", "host:65535", "host:65536",
    "h1:1,h2:2", "h1:1,", "h:1 ,h:2", "registry.example.com:5000/team", "registry.example.com/Team",
    "https://registry.example.com", "docker.io/x/y:1.0", "docker.io/x/y:latest", "docker.io/x/y",
    "docker.io/x/y@sha256:" + "a" * 64, "x/y:tag-", "x/y:-tag", "500m", "2", "4Gi", "1.5Gi",
    "2x", ".", "..", "Topic.Name_1", "a/b", "mico-registry-credentials", "a" * 250,
    -1, 0, 1, 600, 604800, 604801, True,
]  # fmt: skip


@pytest.mark.parametrize("field", [f.name for f in fields(Settings)])
def test_values_schema_accepts_exactly_what_the_daemon_accepts(field: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    own = {**schema["properties"][_camel(field)], "$defs": schema["$defs"]}
    validator = jsonschema.Draft202012Validator(own)
    default = next(f.default for f in fields(Settings) if f.name == field)
    wrong = [
        (probe, "daemon accepts" if daemon else "daemon refuses")
        for probe in [default, *_PROBES]
        if not (field in CHART_DERIVED and probe == "")
        if (daemon := render_settings.problem(field, probe) is None) != validator.is_valid(probe)
    ]
    assert not wrong, f"values.schema.json and the daemon disagree on {_camel(field)}: {wrong}"
