"""The Helm chart as the tests see it: helm from `make chart-tools`, and rendered objects.

helm is not skipped when missing: a chart that cannot be tested must not look green.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mico-reconciler"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELM = ROOT / ".tools" / "bin" / "helm"
HELM_PLUGINS = ROOT / ".tools" / "helm-plugins"
KUBE_VERSION = "1.36.0"
RELEASE = "mico"
RELEASE_NAMESPACE = "mico-system"


def helm(
    *args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs .tools/bin/helm (with `env` over the environment); a missing helm fails the test
    with what to do."""
    if not HELM.exists():
        pytest.fail(f"{HELM.relative_to(ROOT)} is missing: run `make chart-tools`", pytrace=False)
    environment = {**os.environ, "HELM_PLUGINS": str(HELM_PLUGINS), **(env or {})}
    done = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=environment, check=False, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def values(path: Path) -> dict[str, Any]:
    """The chart's defaults with one values file over them (maps merged, other values replaced)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(defaults, yaml.safe_load(path.read_text()) or {})


def render(
    values_file: Path,
    *,
    release: str = RELEASE,
    namespace: str = RELEASE_NAMESPACE,
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    out = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(values_file),
        *extra,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def ci_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")
