"""The command line as CI uses it: exit codes, output formats, real git repositories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.cli import EXIT_CODES, main
from reconciler.store import ActionRecord, AppStatusRecord, Store
from tests.helpers import EXAMPLE, ROOT, commit, dump, example_data, new_repo, run


def test_validate_example() -> None:
    result = run("validate", "examples/mico.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid (4 services, 2 applications)" in result.stdout


def test_invalid_spec_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    data = example_data()
    data["services"][0]["interfaces"][0]["ports"][0]["port"] = 0
    data["applications"][0]["services"][1]["replcas"] = 2
    (tmp_path / "mico.yaml").write_bytes(dump(data))
    result = run("validate", str(tmp_path / "mico.yaml"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{tmp_path / 'mico.yaml'}:") for line in lines)
    assert "Traceback" not in result.stderr


def test_validate_json_output(tmp_path: Path) -> None:
    (tmp_path / "mico.yaml").write_text("apiVersion: ust.mico/v1\nservices: 3\n")
    result = run("validate", str(tmp_path), "--output", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["problems"] == [
        {
            "file": str(tmp_path / "mico.yaml"),
            "line": 2,
            "column": 1,
            "field": "services",
            "message": "Input should be a valid list, got number 3",
        }
    ]


@pytest.mark.parametrize("args", [("validate", "no/such/path"), ("render", "no/such/path"), ("validate",)])
def test_usage_and_io_errors_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_directory_without_config_files_exits_2(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("a: 1\n")
    result = run("validate", str(tmp_path))
    assert result.returncode == 2
    assert "no mico.yaml or *.mico.yaml" in result.stderr


def test_directory_reads_nested_files_in_sorted_order(tmp_path: Path) -> None:
    data = example_data()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "services.mico.yaml").write_bytes(dump({**data, "applications": []}))
    (tmp_path / "apps.mico.yaml").write_bytes(
        dump({"apiVersion": data["apiVersion"], "applications": data["applications"]})
    )
    (tmp_path / "ignored.yaml").write_text("not: [valid")
    assert run("validate", str(tmp_path)).returncode == 0
    split = run("render", str(tmp_path))
    assert split.stdout == run("render", str(EXAMPLE)).stdout


def test_render_twice_prints_identical_bytes() -> None:
    first, second = run("render", "examples/mico.yaml"), run("render", "examples/mico.yaml")
    assert first.returncode == 0
    assert first.stdout == second.stdout
    assert first.stdout.count("\n---\n") + 1 == 9


def test_render_rejects_unsafe_settings() -> None:
    result = run("render", "examples/mico.yaml", "--registry", "evil.example/x; rm -rf /")
    assert result.returncode == 2
    assert result.stderr.startswith("mico-reconciler render: error: argument --registry: expected HOST")
    assert "rm -rf" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_render_settings_from_environment() -> None:
    result = run("render", "examples/mico.yaml", env={**os.environ, "MICO_NAMESPACE": "from-env"})
    assert result.returncode == 0, result.stderr
    assert "namespace: from-env" in result.stdout


def test_every_command_has_examples_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in EXIT_CODES:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out
        assert "exit codes:" in out


# -- diff between two git revisions --------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    new_repo(tmp_path)
    commit(tmp_path, example_data(), "base")
    return tmp_path


def diff(repo: Path, base: str, head: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("diff", "--repo", str(repo), "--base", base, "--head", head, "--path", "config", *extra)


def test_diff_without_changes_exits_0(repo: Path) -> None:
    commit(repo, b"# only a comment\n" + dump(example_data()), "comment")
    result = diff(repo, "HEAD~1", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "No changes." in result.stdout


def test_diff_reports_changed_elements_and_objects(repo: Path) -> None:
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 5
    del data["applications"][1]
    commit(repo, data, "scale backend, drop messaging")
    result = diff(repo, "HEAD~1", "HEAD")
    assert result.returncode == 1, result.stderr
    assert "- application messaging-example v1.0.0 (removed)" in result.stdout
    assert "~ application realworld v1.0.0 (changed)" in result.stdout
    assert "-  replicas: 2\n+  replicas: 5" in result.stdout
    assert "5 Kubernetes objects differ (0 added, 1 changed, 4 removed)" in result.stdout


def test_diff_shows_production_settings_as_the_deployment_gets_them(repo: Path) -> None:
    """A Secret reference, an entry's resources and a probe, as reviewers see them in a pull
    request: the config lines and the Deployment's fields, and no Secret contents (there are none
    to show: only names reach the spec)."""
    data = example_data()
    backend = data["applications"][0]["services"][1]
    backend["envRefs"]["JWT_SECRET"]["key"] = "jwt-secret-2026"
    backend["resources"]["limits"] = {"cpu": "1500m"}
    data["services"][0]["livenessProbe"] = {"exec": {"command": ["/bin/healthcheck", "--quick"]}}
    commit(repo, data, "rotate the JWT key, more CPU, an exec liveness probe")
    result = diff(repo, "HEAD~1", "HEAD")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "~ application realworld v1.0.0 (changed)" in out
    assert "~ service spring-boot-realworld-example-app v1.0.0 (changed)" in out
    assert "1 Kubernetes object differs (0 added, 1 changed, 0 removed)" in out
    rotated = "-              key: jwt-secret\n+              key: jwt-secret-2026\n"
    assert rotated + "               name: realworld-backend" in out
    assert "-            cpu: '1'\n+            cpu: 1500m" in out
    assert (
        "+          exec:\n+            command:\n+            - /bin/healthcheck\n+            - --quick"
        in out
    )
    assert "-          tcpSocket:\n-            port: 8080" in out  # the interface's targetPort


def test_diff_markdown_and_json(repo: Path) -> None:
    data = example_data()
    data["services"][2]["image"] = "docker.io/ustmico/test-message-generator:v1.0.1"
    commit(repo, data, "bump generator image")
    markdown = diff(repo, "main~1", "main", "--output", "markdown")
    assert markdown.returncode == 1
    assert markdown.stdout.startswith("### mico-reconciler diff `main~1@")
    assert "| ~ | service | `test-message-generator` | `v1.0.0` | changed |" in markdown.stdout
    assert "```diff" in markdown.stdout
    assert "+        image: docker.io/ustmico/test-message-generator:v1.0.1" in markdown.stdout
    report = json.loads(diff(repo, "main~1", "main", "--output", "json").stdout)
    assert report["hasChanges"] is True
    assert [(o["kind"], o["change"]) for o in report["objects"]] == [("Deployment", "changed")]


def test_diff_markdown_draws_each_touched_application_with_its_changes_marked(repo: Path) -> None:
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 5  # realworld's backend
    commit(repo, data, "scale the backend")
    markdown = diff(repo, "main~1", "main", "--output", "markdown").stdout
    assert markdown.count("```mermaid") == 1  # realworld only: messaging-example is untouched
    drawn = markdown.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert drawn.startswith("flowchart LR\n")
    marked = drawn.split("  class ")[-1].split()[0].split(",")
    backend = next(line for line in drawn.splitlines() if "spring-boot-realworld-example-app v1.0.0" in line)
    assert backend.split("[", 1)[0].strip() in marked
    assert "x5" in backend
    assert "#42; changed" in backend
    frontend = next(line for line in drawn.splitlines() if "react-redux-realworld-example-app v1" in line)
    assert frontend.split("[", 1)[0].strip() not in marked


def test_diff_shows_which_applications_a_build_gates(repo: Path) -> None:
    data = example_data()
    data["applications"][1]["services"].append(
        {"shortName": "spring-boot-realworld-example-app", "version": "v1.0.0", "instance": "messaging"}
    )
    commit(repo, data, "messaging uses the backend too")
    result = diff(repo, "HEAD~1", "HEAD")
    assert result.returncode == 1, result.stderr
    gates = "ust.mico/gates: messaging-example@v1.0.0,realworld@v1.0.0"
    assert f"-    ust.mico/gates: realworld@v1.0.0\n+    {gates}" in result.stdout


def test_status_says_where_a_held_application_stays(tmp_path: Path) -> None:
    held = {"revision": "a" * 40, "problem": None}
    build = {"job": "build-x-v1-0-0", "state": "failed", "reason": "BackoffLimitExceeded", "logTail": None}
    store = Store(tmp_path / "state.db")
    statuses = [
        AppStatusRecord("shop", "v1.0.0", "Incomplete", "OutOfSync", {"builds": [build], "heldAt": held}),
        AppStatusRecord(
            "new", "v1.0.0", "Pending", "OutOfSync", {"heldAt": {"revision": None, "problem": None}}
        ),
    ]
    store.finish_run(store.start_run("test"), outcome="failed", revision="b" * 40, statuses=statuses)
    store.close()
    text = run("status", "--state-db", str(tmp_path / "state.db")).stdout
    assert f"  held back at revision {'a' * 12} until its builds succeed; its objects are kept\n" in text
    assert "  build build-x-v1-0-0 failed: BackoffLimitExceeded" in text
    assert "new v1.0.0: Pending, OutOfSync" in text
    assert "  held back: not rolled out yet; it rolls out once its builds succeed" in text


def test_history_shows_how_often_a_run_repeated(tmp_path: Path) -> None:
    """Re-checks of a Pending rollout that found the same thing are one line with a count."""
    path = tmp_path / "state.db"
    store = Store(path)
    pending = [AppStatusRecord("shop", "v1.0.0", "Pending", "Synced", {"totals": {"availableReplicas": 0}})]
    applied = ActionRecord("Deployment", "ns", "shop", "create", "created", "new in the config", False)
    for trigger, actions in [("webhook:github", [applied])] + [("progress", [])] * 4:
        run_id = store.start_run(trigger)
        store.finish_run(run_id, outcome="succeeded", revision="c" * 40, actions=actions, statuses=pending)
    store.close()
    text = run("history", "--state-db", str(path))
    assert text.returncode == 0, text.stderr
    checks, created = text.stdout.splitlines()[0], text.stdout.splitlines()[1:]
    assert re.fullmatch(
        r"#2 +\S+ \S+  succeeded +progress +c{12} +0 actions  "
        r"\(\+3 identical runs, the last at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)",
        checks,
    ), checks
    assert "identical" not in "\n".join(created)
    history = run("history", "--state-db", str(path), "--output", "json")
    assert [(r["id"], r["trigger"], r["repeats"]) for r in json.loads(history.stdout)] == [
        (2, "progress", 3),
        (1, "webhook:github", 0),
    ]


def test_diff_with_invalid_head_exits_2_and_prints_problems(repo: Path) -> None:
    data = example_data()
    data["applications"][0]["services"][0]["replicas"] = -1
    commit(repo, data, "broken")
    result = diff(repo, "HEAD~1", "HEAD")
    assert result.returncode == 2
    assert "the config at HEAD (" in result.stderr
    assert "config/mico.yaml:" in result.stderr
    assert "replicas: Input should be greater than or equal to 1" in result.stderr


def test_diff_with_unknown_revision_exits_2(repo: Path) -> None:
    result = diff(repo, "HEAD", "no-such-branch")
    assert result.returncode == 2
    assert "'no-such-branch': no such revision" in result.stderr
    assert "Traceback" not in result.stderr


def test_readme_states_the_exit_codes_each_command_returns() -> None:
    readme = (ROOT / "README.md").read_text()
    for command, codes in EXIT_CODES.items():
        row = re.search(rf"^\| `{command}` \| (.*) \|$", readme, re.MULTILINE)
        assert row, f"no README row for {command}"
        assert {int(code) for code in re.findall(r"`(\d)`", row[1])} == set(codes), command


# -- graph and GitHub annotations ------------------------------------------------------------------


def test_graph_of_one_application_in_each_format() -> None:
    mermaid = run("graph", "examples/mico.yaml", "--app", "realworld")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "BACKEND_REST_API" in mermaid.stdout
    assert "test-message-generator" not in mermaid.stdout
    dot = run("graph", "examples/mico.yaml", "--format", "dot")
    assert dot.stdout.startswith("digraph mico {")
    assert dot.stdout.rstrip().endswith("}")
    svg = run("graph", "examples/mico.yaml", "--format", "svg", "--app", "messaging-example@v1.0.0")
    root = ET.fromstring(svg.stdout)
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"topic transform-request", "topic transform-result", "kafka-faas-connector transformer"} <= texts


def test_graph_of_an_unknown_application_exits_1() -> None:
    result = run("graph", "examples/mico.yaml", "--app", "nope")
    assert result.returncode == 1
    assert result.stderr == "mico-reconciler: no application 'nope' in the config\n"
    assert result.stdout == ""


def test_validate_github_output_is_one_annotation_per_problem(tmp_path: Path) -> None:
    data = example_data()
    data["services"][0]["version"] = "1:0"
    data["applications"][0]["services"][0]["replicas"] = 0
    (tmp_path / "mico.yaml").write_bytes(dump(data))
    result = run("validate", str(tmp_path / "mico.yaml"), "--output", "github")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert all(line.startswith(f"::error file={tmp_path}/mico.yaml,line=") for line in lines)
    assert (
        ",col=5,title=services[0].version::'1%3A0' is not a version" not in result.stdout
    )  # data, not property
    assert ",title=services[0].version::'1:0' is not a version" in result.stdout
    assert ",title=applications[0].services[0].replicas::" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["https://deploy:s3cr3t-token@git.example.com/team/api.git"],
        ["https://git.example.com/team/api.git; rm -rf /"],
        ["https://git.example.com/team/api.git", "--dockerfile", "../../etc/passwd"],
        ["https://git.example.com/team/api.git", "--port", "70000"],
        ["https://git.example.com/team/api.git", "--short-name", "A B"],
        ["https://git.example.com/team/api.git", "--tag", "v1*", "--all-tags"],
    ],
)
def test_import_refuses_bad_arguments_without_echoing_them(args: list[str]) -> None:
    result = run("import", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "s3cr3t-token" not in result.stderr
    assert "rm -rf" not in result.stderr
    assert "etc/passwd" not in result.stderr


def test_diff_needs_both_revisions_or_live(repo: Path) -> None:
    result = run("diff", "--repo", str(repo), "--head", "HEAD")
    assert result.returncode == 2
    assert result.stderr == "mico-reconciler: diff needs --base and --head (or --live)\n"
    both = run("diff", "--live", "--repo", str(repo), "--base", "HEAD", "--head", "HEAD")
    assert both.returncode == 2
    assert "give --head (or nothing), not --base" in both.stderr
