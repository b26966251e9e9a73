"""Every command over a corpus of hostile inputs: no traceback, only documented exit codes, no
credential in any output.

The corpus is `tests/hostile/` (one file per case, named `CLASS--CASE`) plus the cases below
that cannot live in git as files (huge documents, FIFOs, devices, databases, shallow clones).
Commands run in-process through `main()`, so an exception that escapes is the traceback a user
would see, and fails the test with it; the few inputs that could block (FIFOs) run in a child
process with a time limit.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import EXIT_CODES, main
from reconciler.store import Store
from tests.helpers import EXAMPLE, ROOT, commit, dump, example_data, finished_run, git, new_repo, run

CORPUS = ROOT / "tests" / "hostile"
#: Credentials planted in the corpus; none may appear in any output.
SECRETS = ("hunter2", "s3cr3t-TOKEN")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def invoke(*argv: str) -> Outcome:
    """`mico-reconciler ARGV` in this process; an exception escaping `main` fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse's usage errors and --help
            code = exited.code if isinstance(exited.code, int) else 2
    return Outcome(code, out.getvalue(), err.getvalue())


def check(outcome: Outcome, command: str, *, expected: int | None = None) -> Outcome:
    assert outcome.code in EXIT_CODES[command], (command, outcome)
    if expected is not None:
        assert outcome.code == expected, outcome
    for text in (outcome.out, outcome.err):
        assert "Traceback" not in text
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} printed: {text[:2000]}"
    return outcome


def problem_lines_are_one_line_each(outcome: Outcome, path: Path) -> None:
    """Every line of `validate`'s problem report starts at a position: no message spans lines."""
    lines = outcome.err.splitlines()
    assert lines, outcome
    for line in lines:
        assert line.startswith(f"{path}:") or line.startswith("mico-reconciler: "), line


# -- configs -------------------------------------------------------------------------------------

SPEC_FILES = sorted((CORPUS / "specs").glob("*.yaml"))


def _generated() -> dict[str, bytes]:
    """Cases too large to keep in git, built from their recipe."""
    header = b"apiVersion: ust.mico/v1\n"
    example = EXAMPLE.read_bytes()
    service = example_data()["services"][0]
    entry = {"shortName": service["shortName"], "version": service["version"]}
    # 30,000 env values aliasing one 10,000-character string: a 0.4 MB file meaning 300 MB
    env_bomb = (
        header
        + b"x-value: &v '"
        + b"A" * 10_000
        + b"'\n"
        + dump({"services": [service]})
        + b"applications:\n- shortName: bomb\n  version: 1.0.0\n  services:\n"
        + b"  - shortName: %s\n    version: %s\n    env:\n"
        % (entry["shortName"].encode(), entry["version"].encode())
        + b"".join(b"      V%d: *v\n" % i for i in range(30_000))
    )
    huge_env = dump(
        {
            **example_data(),
            "applications": [
                {
                    "shortName": "huge",
                    "version": "1.0.0",
                    "name": "huge",
                    "services": [{**entry, "env": {f"V{i}": "x" * 4000 for i in range(500)}}],
                }
            ],
        }
    )
    return {
        "size--200000-unknown-keys": header + b"".join(b"k%d: 1\n" % i for i in range(200_000)),
        "size--long-integer": header + b"services: " + b"9" * 20_000 + b"\n",
        "size--alias-bomb-env-value": env_bomb,
        "size--deployment-over-apiserver-limit": huge_env,
        "size--range-backtracking": example
        + b"".join(
            b"---\napiVersion: ust.mico/v1\nservices:\n- shortName: range%d\n  name: r\n  version: 1.0.0\n"
            b"  image: docker.io/x/r:1\n  dependencies:\n  - shortName: range0\n    version: '1.0.0%s<'\n"
            % (i, b" " * 240)
            for i in range(6)
        ),
        "size--deep-nesting": header + b"services: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    }


GENERATED = _generated()
SPEC_CASES = [pytest.param(p.read_bytes(), id=p.stem) for p in SPEC_FILES] + [
    pytest.param(content, id=name) for name, content in GENERATED.items()
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A config repository whose first commit is the valid example."""
    root = new_repo(tmp_path / "repo")
    commit(root, EXAMPLE.read_bytes(), "base", name="mico.yaml")
    return root


def test_the_corpus_covers_every_class() -> None:
    classes = {p.stem.split("--")[0] for p in SPEC_FILES} | {n.split("--")[0] for n in GENERATED}
    assert {
        "unconstructable",
        "yaml11",
        "empty",
        "size",
        "credentials",
        "labels",
        "oneline",
    } <= classes, classes


@pytest.mark.parametrize("content", SPEC_CASES)
def test_config_commands(content: bytes, repo: Path) -> None:
    config = repo / "mico.yaml"
    config.write_bytes(content)
    validated = check(invoke("validate", str(config)), "validate")
    assert validated.code in (0, 1), validated
    if validated.code == 1:
        problem_lines_are_one_line_each(validated, config)
    report = check(invoke("validate", str(config), "--output", "json"), "validate", expected=validated.code)
    assert json.loads(report.out)["valid"] is (validated.code == 0)
    check(invoke("render", str(config)), "render", expected=validated.code)
    annotated = check(
        invoke("validate", str(config), "--output", "github"), "validate", expected=validated.code
    )
    assert all(line.startswith("::error file=") for line in annotated.out.splitlines()) or validated.code == 0
    for picture in ("mermaid", "dot", "svg"):
        check(invoke("graph", str(config), "--format", picture), "graph", expected=validated.code)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "hostile")
    for output in ("text", "markdown", "json"):
        diffed = check(
            invoke("diff", "--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--output", output),
            "diff",
        )
        assert (diffed.code == 2) is (validated.code == 1), diffed


# -- config paths: special files and symlinks ---------------------------------------------------


def _in_child(*argv: str) -> Outcome:
    """For inputs that could block a reader (FIFOs): a child process with a time limit."""
    result = run(*argv, timeout=60)
    return Outcome(result.returncode, result.stdout, result.stderr)


def _special(kind: str, tree: Path, outside: Path) -> None:
    target = tree / "app.mico.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    elif kind == "dangling-symlink":
        target.symlink_to(tree / "missing.yaml")
    elif kind == "symlink-outside":
        target.symlink_to(outside)
    elif kind == "symlinked-directory-outside":
        (tree / "linked").symlink_to(outside.parent, target_is_directory=True)
    elif kind == "directory-named-like-a-config":
        target.mkdir()
    elif kind == "symlink-loop":
        (tree / "loop").symlink_to(tree, target_is_directory=True)
        target.symlink_to(tree / "app.mico.yaml")


SPECIAL = (
    "fifo",
    "device",
    "dangling-symlink",
    "symlink-outside",
    "symlinked-directory-outside",
    "directory-named-like-a-config",
    "symlink-loop",
)


@pytest.mark.parametrize("kind", SPECIAL)
def test_special_files_in_a_config_tree(kind: str, tmp_path: Path) -> None:
    outside = tmp_path / "secret" / "mico.yaml"
    outside.parent.mkdir()
    outside.write_text("apiVersion: ust.mico/v1\nservices: s3cr3t-TOKEN\n")
    tree = tmp_path / "config"
    tree.mkdir()
    (tree / "mico.yaml").write_bytes(EXAMPLE.read_bytes())
    _special(kind, tree, outside)
    for command in ("validate", "render"):
        outcome = check(_in_child(command, str(tree)), command)
        assert outcome.code != 0 or kind == "symlinked-directory-outside", outcome
    if kind not in ("fifo", "directory-named-like-a-config"):  # git stores neither
        new_repo(tree)
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", kind)
        check(_in_child("diff", "--repo", str(tree), "--base", "HEAD", "--head", "HEAD"), "diff")


# -- revisions -------------------------------------------------------------------------------------

REVISIONS = (
    "0" * 40,
    "@{-1}",
    "HEAD@{99}",
    "deadbeef" * 5,
    "HEAD^{tree}",
    "HEAD:mico.yaml",
    "--output=/tmp/x",
    "-h",
    "main\nsecond line",
    "`x`</code><img src=x onerror=alert(1)>",
    "https://user:hunter2@example.com/x",
    "",
)


@pytest.mark.parametrize("revision", REVISIONS)
def test_revisions(revision: str, repo: Path) -> None:
    for base, head in ((revision, "HEAD"), ("HEAD", revision)):
        outcome = check(invoke("diff", "--repo", str(repo), "--base", base, "--head", head), "diff")
        assert outcome.code == 2, outcome


def test_shallow_clone_says_how_to_fetch_the_base(repo: Path, tmp_path: Path) -> None:
    (repo / "mico.yaml").write_bytes(EXAMPLE.read_bytes().replace(b"replicas: 2", b"replicas: 3"))
    git(repo, "commit", "-q", "-am", "scale")
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", repo.as_uri(), str(shallow)], check=True)
    outcome = check(invoke("diff", "--repo", str(shallow), "--base", "HEAD~1", "--head", "HEAD"), "diff")
    assert outcome.code == 2
    assert "shallow" in outcome.err
    assert "fetch" in outcome.err


@pytest.mark.parametrize("path", ["./", ".", "/", "./.", ".//"])
def test_diff_path_spellings_of_the_root(path: str, repo: Path) -> None:
    check(
        invoke("diff", "--repo", str(repo), "--base", "HEAD", "--head", "HEAD", "--path", path),
        "diff",
        expected=0,
    )


# -- state databases -------------------------------------------------------------------------------


def _database(kind: str, path: Path) -> Path:
    if kind == "text":
        path.write_text("not a database\n")
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        return Path("/dev/null")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "other-sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE runs (x)")
            db.execute("INSERT INTO runs VALUES ('hunter2')")
    elif kind == "newer-schema":
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 999")
    elif kind.startswith("bad-values"):
        _sync_history(path)
        with sqlite3.connect(path) as db:
            if kind == "bad-values-json":
                db.execute("UPDATE app_status SET detail = '{not json'")
            elif kind == "bad-values-types":
                db.execute("UPDATE runs SET started = 'yesterday', revision = 42, outcome = 7")
            elif kind == "bad-values-nulls":
                db.execute("UPDATE runs SET finished = NULL, error = NULL, api_requests = NULL")
                db.execute("UPDATE app_status SET detail = 'null'")
            elif kind == "bad-values-huge-time":
                db.execute("UPDATE runs SET started = 1e300, finished = -1e300")
    return path


def _sync_history(path: Path) -> None:
    """A finished run and a run still running, as a live daemon leaves them."""
    finished_run(path)
    store = Store(path)
    store.start_run("schedule")
    store.close()


DATABASES = (
    "text",
    "random-bytes",
    "empty-file",
    "directory",
    "device",
    "fifo",
    "other-sqlite",
    "newer-schema",
    "bad-values-json",
    "bad-values-types",
    "bad-values-nulls",
    "bad-values-huge-time",
)


@pytest.mark.parametrize("kind", DATABASES)
def test_state_databases(kind: str, tmp_path: Path) -> None:
    db = _database(kind, tmp_path / "state.db")
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (("history",), ("status",), ("history", "--output", "json"), ("status", "--output", "json")):
        outcome = check(_in_child(*args, "--state-db", str(db)), args[0])
        assert outcome.code in (0, 2), outcome
        assert len(outcome.err.splitlines()) <= 1, outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- cluster connection and settings ------------------------------------------------------------


KUBECONFIGS = {
    "missing": None,
    "empty": "",
    "not-yaml": "{{{ : :",
    "not-a-kubeconfig": "- a\n- b\n",
    "no-current-context": "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    "bad-certificate": (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: '%%%'}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "users: [{name: u, user: {token: s3cr3t-TOKEN}}]\n"
    ),
    "garbage-server": (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'ht!tp://user:hunter2@[::1'}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "users: [{name: u, user: {token: s3cr3t-TOKEN}}]\n"
    ),
    "unreachable": (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "users: [{name: u, user: {token: s3cr3t-TOKEN}}]\n"
    ),
}


@pytest.mark.parametrize("kind", list(KUBECONFIGS))
def test_kubeconfigs(kind: str, repo: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if KUBECONFIGS[kind] is not None:
        kubeconfig.write_text(KUBECONFIGS[kind] or "")
    outcome = check(
        _in_child(
            "sync",
            "--repo",
            repo.as_uri(),
            "--kubeconfig",
            str(kubeconfig),
            "--state-db",
            str(tmp_path / "state.db"),
            "--workdir",
            str(tmp_path / "work"),
            "--topics",
            "off",
        ),
        "sync",
    )
    assert outcome.code == 4, outcome


SETTINGS = (
    ("--namespace", "n" * 64),
    ("--build-namespace", "Bad_Namespace"),
    ("--invalid-message-topic", "."),
    ("--dead-letter-topic", ".."),
    ("--test-message-output-topic", "t" * 250),
    ("--kafka-bootstrap-servers", "broker:65536"),
    ("--kafka-bootstrap-servers", "SASL_SSL://user:hunter2@broker:9093"),
    ("--registry", "user:hunter2@registry.example.com"),
    ("--openfaas-gateway", "http://admin:hunter2@gateway:8080"),
    ("--connector-image", "docker.io/ustmico/kafka-faas-connector:latest-"),
    ("--connector-image", "docker.io/ustmico/kafka-faas-connector:" + "v" * 128),
    ("--build-deadline-seconds", "abc"),
    ("--build-deadline-seconds", "0"),
)


@pytest.mark.parametrize(("flag", "value"), SETTINGS)
@pytest.mark.parametrize("via", ["flag", "environment"])
def test_render_settings(flag: str, value: str, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if via == "flag":
        outcome = invoke("render", str(EXAMPLE), flag, value)
    else:
        monkeypatch.setenv("MICO_" + flag.removeprefix("--").replace("-", "_").upper(), value)
        outcome = invoke("render", str(EXAMPLE))
    check(outcome, "render", expected=2)
    assert flag.removeprefix("--").replace("-", "_") in outcome.err or flag in outcome.err, outcome


DAEMON_FLAGS = (
    ("--interval", "0"),
    ("--interval", "nan"),
    ("--interval", "-5"),
    ("--concurrency", "0"),
    ("--max-prune-fraction", "2"),
    ("--git-timeout", "-1"),
    ("--history-retention", "0"),
    ("--topic-partitions", "0"),
    ("--listen", "127.0.0.1:99999"),
    ("--listen", "nohostport"),
    ("--kafka-admin-bootstrap-servers", "SASL_SSL://user:hunter2@broker:9093"),
    ("--repo", "https://user:hunter2@git.example.com/config.git"),
    ("--webhook-secret-file", "/nonexistent/secret"),
)


@pytest.mark.parametrize(("flag", "value"), DAEMON_FLAGS)
def test_daemon_settings(flag: str, value: str, tmp_path: Path) -> None:
    args = {"--repo": "git://127.0.0.1:1/x.git", "--state-db": str(tmp_path / "s.db"), flag: value}
    argv = [item for pair in args.items() for item in pair]
    outcome = check(_in_child("run", *argv), "run")
    assert outcome.code != 0, outcome
    assert re.search("[-_]".join(map(re.escape, flag.removeprefix("--").split("-"))), outcome.err), outcome
