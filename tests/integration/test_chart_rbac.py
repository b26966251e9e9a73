"""The daemon under exactly the chart's RBAC: the chart installed into a release namespace with
its Roles in a workload and a build namespace, and the daemon run as a process with the chart's
environment and a token of the chart's ServiceAccount. It converges the example (a Kaniko build,
Kafka topics), takes the chart's Lease, is ready, and no API request is refused."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.chart.chart import CHART, helm
from tests.helpers import EXAMPLE
from tests.integration.conftest import (
    ConfigRepo,
    Daemon,
    Platform,
    deployments,
    free_port,
    kafka_settings,
    ready,
    token_kubeconfig,
)
from tests.integration.test_platform import eventually

RELEASE = "rbac"


@pytest.fixture
def namespaces(platform: Platform, kube: client.ApiClient) -> Iterator[tuple[str, str, str]]:
    """(release, workload, build), the release namespace under Pod Security `restricted`."""
    suffix = uuid.uuid4().hex[:6]
    made = (f"rbac-rel-{suffix}", f"rbac-apps-{suffix}", f"rbac-builds-{suffix}")
    core = client.CoreV1Api(kube)
    for name in made:
        labels = {"pod-security.kubernetes.io/enforce": "restricted"} if name == made[0] else {}
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
    yield made
    helm("uninstall", RELEASE, "--namespace", made[0], "--kubeconfig", str(platform.kubeconfig), check=False)
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


def test_the_daemon_under_the_charts_service_account(
    platform: Platform,
    kube: client.ApiClient,
    namespaces: tuple[str, str, str],
    config_repo: ConfigRepo,
    tmp_path: Path,
) -> None:
    release, workload, build = namespaces
    settings = kafka_settings(platform, workload) | {"build_namespace": build}
    values = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): v for k, v in settings.items()}
    values["repo"] = config_repo.url
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        release,
        "--kubeconfig",
        str(platform.kubeconfig),
        "-f",
        str(tmp_path / "values.yaml"),
    )
    manifest = [
        o
        for o in yaml.safe_load_all(
            helm("get", "manifest", RELEASE, "-n", release, "--kubeconfig", str(platform.kubeconfig)).stdout
        )
        if o
    ]
    (account,) = [o["metadata"]["name"] for o in manifest if o["kind"] == "ServiceAccount"]
    (deployment,) = [o for o in manifest if o["kind"] == "Deployment"]
    chart_env = {
        e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert chart_env["MICO_LEASE_NAMESPACE"] == release

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(token_kubeconfig(platform, kube, release, account))
    port = free_port()
    environment = {
        **chart_env,
        # what differs outside a pod: the connection, the paths, the address
        "MICO_KUBECONFIG": str(kubeconfig),
        "MICO_STATE_DB": str(tmp_path / "state.db"),
        "MICO_WORKDIR": str(tmp_path / "repo"),
        "MICO_LISTEN": f"127.0.0.1:{port}",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    revision = config_repo.push(EXAMPLE.read_text(), "the example")
    log = (tmp_path / "daemon.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run"], env=environment, stdout=log, stderr=log
    )
    daemon = Daemon(process, f"http://127.0.0.1:{port}", tmp_path / "state.db")
    try:
        eventually(lambda: ready(daemon), timeout=120, what="the daemon's first run")
        (run,) = daemon.runs()
        assert (run["outcome"], run["revision"]) == ("succeeded", revision), run["error"]
        assert [b["outcome"] for b in run["builds"]] == ["succeeded"]
        assert run["topics"], "the example's topics were created"
        assert len(deployments(kube, workload)) == 5
        lease = client.CoordinationV1Api(kube).read_namespaced_lease(chart_env["MICO_LEASE_NAME"], release)
        assert lease.spec.holder_identity
        metrics = daemon.get("/metrics")[1].decode()
        codes = set(re.findall(r'^rest_client_requests_total\{[^}]*code="(\d+)"', metrics, flags=re.M))
        assert codes, "rest_client_requests_total is exported"
        assert "403" not in codes, codes
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
