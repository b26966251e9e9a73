"""The CI recipes users copy (examples/ci/, .pre-commit-hooks.yaml): checked against their
published schemas, and their commands run the way the CI system runs them, in a clone of a
config repository whose pull request changes one application."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, dump, example_data

BIN = Path(sys.executable).parent
RECIPES = ROOT / "examples" / "ci"


def tool(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, check=False)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("recipe", "schema"),
    [("github-actions.yml", "vendor.github-workflows"), ("gitlab-ci.yml", "vendor.gitlab-ci")],
)
def test_recipe_is_valid_against_its_published_schema(recipe: str, schema: str) -> None:
    checked = tool(str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(RECIPES / recipe))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pre_commit_manifest_is_valid() -> None:
    checked = tool(str(BIN / "pre-commit"), "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A clone, checked out at a pull request's head, of an origin whose main holds the example:
    the pull request scales realworld's backend."""
    origin, work = tmp_path / "origin", tmp_path / "work"
    (origin / "config").mkdir(parents=True)
    git(origin, "init", "-q", "-b", "main")
    (origin / "config" / "mico.yaml").write_bytes(dump(example_data()))
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "the example")
    git(tmp_path, "clone", "-q", str(origin), str(work))
    git(work, "checkout", "-qb", "scale-backend")
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 4
    (work / "config" / "mico.yaml").write_bytes(dump(data))
    git(work, "commit", "-qam", "scale the backend")
    return work


def run_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One `run:` or `script:` entry, as the runners do: bash, stopping at the first failure."""
    return tool("bash", "-e", "-o", "pipefail", "-c", script, cwd=cwd, env=env)


def ci_env(**values: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **values}


def test_github_actions_steps_validate_and_write_the_comment(pull_request: Path) -> None:
    workflow = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    steps = workflow["jobs"]["review"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch's commit must be there
    ours = [s["run"] for s in steps if "mico-reconciler " in s.get("run", "")]
    assert len(ours) == 2
    env = ci_env(GITHUB_BASE_REF="main")
    for script in ours:
        ran = run_script(script, pull_request, env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    comment = (pull_request / "diff.md").read_text()
    assert comment.startswith("### mico-reconciler diff `origin/main@")
    assert "```mermaid" in comment
    assert "+  replicas: 4" in comment


def test_github_actions_annotates_an_invalid_config_and_fails(pull_request: Path) -> None:
    (pull_request / "config" / "mico.yaml").write_text(
        (pull_request / "config" / "mico.yaml").read_text().replace("replicas: 4", "replicas: 0")
    )
    workflow = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    validate = next(s["run"] for s in workflow["jobs"]["review"]["steps"] if "validate" in s.get("run", ""))
    ran = run_script(validate, pull_request, ci_env(GITHUB_BASE_REF="main"))
    assert ran.returncode == 1
    assert ran.stdout.startswith("::error file=config/mico.yaml,line=")
    assert "title=applications[0].services[1].replicas::" in ran.stdout


def test_gitlab_ci_script_validates_and_keeps_the_diff(pull_request: Path) -> None:
    job = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())["mico-review"]
    assert job["variables"]["GIT_DEPTH"] == "0"
    fetch = [line for line in job["before_script"] if line.startswith("git fetch")]
    ours = [line for line in job["script"] if "mico-reconciler " in line]
    note = [line for line in job["script"] if "MICO_REVIEW_TOKEN" in line]
    env = ci_env(CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main", MICO_REVIEW_TOKEN="")
    for script in [*fetch, *ours, *note]:  # no token: no note is posted
        ran = run_script(script, pull_request, env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (pull_request / "diff.md").read_text().startswith("### mico-reconciler diff `origin/main@")
    assert job["artifacts"]["paths"] == ["diff.md"]


def test_pre_commit_runs_the_hook_on_a_config_repository(pull_request: Path, tmp_path: Path) -> None:
    """pre-commit itself installs the hook from this repository (into a fresh environment, from
    the package index) and runs it, as `pre-commit try-repo` does for a user trying it."""
    if shutil.which("git") is None:
        pytest.skip("pre-commit needs git")
    env = ci_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    (pull_request / "config" / "broken.mico.yaml").write_text(
        "apiVersion: ust.mico/v1\nservices:\n  - shortName: x\n"
    )
    git(pull_request, "add", ".")
    hook = [str(BIN / "pre-commit"), "try-repo", str(ROOT), "mico-validate", "--all-files"]
    failed = tool(*hook, cwd=pull_request, env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "config/broken.mico.yaml:3:5: services[0].shortName:" in failed.stdout
    git(pull_request, "rm", "-qf", "config/broken.mico.yaml")
    passed = tool(*hook, cwd=pull_request, env=env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "mico-reconciler validate" in passed.stdout
    assert "Passed" in passed.stdout
