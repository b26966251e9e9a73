"""`sync`, `run`, `history` and `status` over hostile inputs: kubeconfigs, state databases,
settings and files. Each fails with its documented exit code, one line naming the cause, no
traceback, and no credential in any output."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import EXIT_CODES
from reconciler.store import MIGRATIONS, Store
from tests.helpers import EXAMPLE, commit, finished_run, new_repo, run

SECRETS = ("hunter2", "s3cr3t-TOKEN")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, with no KUBECONFIG and not in a pod unless `env` says so."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MICO_", "KUBE"))}
    return run(*args, env={**base, **(env or {})}, timeout=120)


def fails(
    result: subprocess.CompletedProcess[str], command: str, code: int, *causes: str, one_line: bool = True
) -> None:
    assert result.returncode == code, result
    assert code in EXIT_CODES[command]
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text
        for secret in SECRETS:
            assert secret not in text, text
    if one_line:
        assert len(result.stderr.splitlines()) == 1, result.stderr
    for cause in causes:
        assert cause in result.stderr, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> str:
    root = new_repo(tmp_path / "config")
    commit(root, EXAMPLE.read_bytes(), "config", name="mico.yaml")
    return root.as_uri()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubeconfig(cluster: str, user: str = "{token: s3cr3t-TOKEN}") -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {cluster}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        f"users: [{{name: u, user: {user}}}]\n"
    )


# -- kubeconfigs -----------------------------------------------------------------------------------

#: name -> (kubeconfig content, or None for no file; what the error says)
KUBECONFIGS: dict[str, tuple[str | None, str]] = {
    "missing": (None, "no such file"),
    "empty": ("", "empty"),
    "not-yaml": ("{{{ : : s3cr3t-TOKEN", "not YAML"),
    "yaml-but-no-kubeconfig": ("- a\n- s3cr3t-TOKEN\n", "not a valid kubeconfig"),
    "no-current-context": (
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n"
        "users: [{name: u, user: {token: s3cr3t-TOKEN}}]\n",
        "current-context",
    ),
    "unknown-context": (
        kubeconfig("{server: 'https://127.0.0.1:1'}").replace("current-context: c", "current-context: x"),
        "x",
    ),
    "ca-not-base64": (
        kubeconfig("{server: 'https://127.0.0.1:1', certificate-authority-data: '%%%'}"),
        "certificate authority",
    ),
    "client-key-not-base64": (
        kubeconfig(
            "{server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}",
            "{client-certificate-data: 'bm90IGEgY2VydA==', client-key-data: 's3cr3t-TOKEN!!'}",
        ),
        "not base64",
    ),
    "garbage-server": (kubeconfig("{server: 'ht!tp://user:hunter2@[::1'}"), "server"),
    "server-without-host": (kubeconfig("{server: 'https://'}"), "server"),
}


@pytest.mark.parametrize("command", ["sync", "run"])
@pytest.mark.parametrize("kind", list(KUBECONFIGS))
def test_unusable_kubeconfig_exits_4(kind: str, command: str, repo: str, tmp_path: Path) -> None:
    content, cause = KUBECONFIGS[kind]
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    daemon = ["--listen", "127.0.0.1:0"] if command == "run" else []
    result = cli(
        command, "--repo", repo, "--kubeconfig", str(path), "--state-db", str(tmp_path / "s.db"),
        "--workdir", str(tmp_path / "work"), "--topics", "off", *daemon,
    )  # fmt: skip
    fails(result, command, 4, f"kubeconfig {path}", cause)


def test_kubeconfig_that_is_a_directory_exits_4(repo: str, tmp_path: Path) -> None:
    result = cli("sync", "--repo", repo, "--kubeconfig", str(tmp_path), "--state-db", str(tmp_path / "s.db"))
    fails(result, "sync", 4, "Is a directory")


@pytest.mark.parametrize("command", ["sync", "run"])
def test_no_kubeconfig_outside_a_pod_exits_4(command: str, repo: str, tmp_path: Path) -> None:
    result = cli(
        command, "--repo", repo, "--state-db", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    fails(result, command, 4, "in-cluster config")


def test_unreachable_cluster_fails_the_sync(repo: str, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        kubeconfig(f"{{server: 'https://127.0.0.1:{closed_port()}', insecure-skip-tls-verify: true}}")
    )
    result = cli(
        "sync", "--repo", repo, "--kubeconfig", str(path), "--state-db", str(tmp_path / "s.db"),
        "--workdir", str(tmp_path / "work"), "--topics", "off",
    )  # fmt: skip
    fails(result, "sync", 4, "Kubernetes API", one_line=False)


# -- state databases -------------------------------------------------------------------------------


def _damaged(sql: str) -> object:
    def make(path: Path) -> None:
        finished_run(path)
        with sqlite3.connect(path) as db:
            db.execute(sql)
        db.close()

    return make


def _sqlite(*sql: str) -> object:
    def make(path: Path) -> None:
        with sqlite3.connect(path) as db:
            for statement in sql:
                db.execute(statement)
        db.close()

    return make


#: name -> (how to make it at PATH, or a fixed path; what the error says)
DATABASES: dict[str, tuple[object, str]] = {
    "missing": (lambda path: None, "no state database"),
    "text": (lambda path: path.write_text("hunter2\n"), "not an SQLite file"),
    "random-bytes": (lambda path: path.write_bytes(os.urandom(4096)), "not an SQLite file"),
    "sqlite-header-only": (
        lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 84),
        "state database",
    ),
    "empty-file": (lambda path: path.write_bytes(b""), "empty file"),
    "directory": (lambda path: path.mkdir(), "not a regular file"),
    "fifo": (lambda path: os.mkfifo(path), "not a regular file"),
    "dev-null": ("/dev/null", "not a regular file"),
    "dev-zero": ("/dev/zero", "not a regular file"),
    "other-sqlite": (_sqlite("CREATE TABLE runs (x)", "INSERT INTO runs VALUES ('hunter2')"), "not a mico"),
    "newer-schema": (_sqlite("CREATE TABLE t (x)", f"PRAGMA user_version = {len(MIGRATIONS) + 1}"), "newer"),
    "older-schema": (_sqlite("CREATE TABLE t (x)", "PRAGMA user_version = 1"), "older"),
    "invalid-json": (_damaged("UPDATE app_status SET detail = '{hunter2'"), "app_status.detail"),
    "json-not-an-object": (_damaged("UPDATE app_status SET detail = '[1]'"), "app_status.detail"),
    "json-of-another-shape": (_damaged("""UPDATE app_status SET detail = '{"instances": 7}'"""), "malformed"),
    "string-for-time": (_damaged("UPDATE runs SET started = 'yesterday', finished = 'today'"), "runs."),
    "huge-time": (_damaged("UPDATE runs SET started = 1e300, finished = 1e300"), "runs."),
    "negative-time": (_damaged("UPDATE runs SET finished = -5"), "runs.finished"),
    "blob-for-text": (_damaged("UPDATE run_actions SET reason = x'00ff'"), "run_actions.reason"),
    "string-for-last-seen": (_damaged("UPDATE runs SET repeats = 2, last_seen = 'later'"), "runs."),
    "null-revision-kept": (_damaged("UPDATE runs SET revision = NULL"), ""),
}


#: Damage to a status's detail, which only `status` reads.
DETAIL_DAMAGE = ("invalid-json", "json-not-an-object", "json-of-another-shape")
#: Damage to a run's actions, which only `history` reads.
ACTION_DAMAGE = ("blob-for-text",)


@pytest.mark.parametrize("kind", list(DATABASES))
@pytest.mark.parametrize(
    "args", [("history",), ("status",), ("history", "--output", "json"), ("status", "--output", "json")]
)
def test_bad_state_database(kind: str, args: tuple[str, ...], tmp_path: Path) -> None:
    make, cause = DATABASES[kind]
    path = Path(make) if isinstance(make, str) else tmp_path / "state.db"
    if callable(make):
        make(path)
    before = sorted(tmp_path.iterdir())
    result = cli(*args, "--state-db", str(path))
    if (
        kind == "null-revision-kept"
        or (kind in DETAIL_DAMAGE and args[0] == "history")
        or (kind in ACTION_DAMAGE and args[0] == "status")
    ):
        assert result.returncode == 0, result  # the command does not read what is damaged
    elif kind == "json-of-another-shape" and args[-1] == "json":
        assert result.returncode == 0, result  # a JSON object, passed through as stored
    else:
        fails(result, args[0], 2, str(path), cause)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("kind", ["text", "directory", "fifo", "other-sqlite", "newer-schema", "dev-null"])
def test_sync_refuses_a_bad_state_database(kind: str, repo: str, tmp_path: Path) -> None:
    make, cause = DATABASES[kind]
    path = Path(make) if isinstance(make, str) else tmp_path / "state.db"
    if callable(make):
        make(path)
    result = cli("sync", "--repo", repo, "--state-db", str(path), "--workdir", str(tmp_path / "w"))
    fails(result, "sync", 2, str(path), cause)


def test_reading_changes_nothing_and_leaves_a_running_run_running(tmp_path: Path) -> None:
    path = tmp_path / "a b?#%.db"
    finished_run(path)
    store = Store(path)
    store.start_run("schedule")  # a daemon's run, in progress
    store.close()
    (tmp_path / "empty.db").write_bytes(b"")
    snapshot = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    history = cli("history", "--state-db", str(path))
    assert history.returncode == 0, history
    assert history.stdout.splitlines()[0].split()[3] == "running"
    assert cli("status", "--state-db", str(path)).returncode == 0
    assert cli("history", "--state-db", str(tmp_path / "empty.db")).returncode == 2
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == snapshot
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT outcome FROM runs ORDER BY id").fetchall() == [("succeeded",), ("running",)]
    db.close()


def test_reading_while_a_daemon_has_the_database_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    finished_run(path)
    daemon = Store(path)
    daemon.start_run("schedule")
    try:
        history = cli("history", "--state-db", str(path), "--output", "json")
        assert history.returncode == 0, history
        assert '"outcome": "running"' in history.stdout
    finally:
        daemon.close()


# -- settings, flags and MICO_* variables -----------------------------------------------------------

BAD_SETTINGS = (
    ("--namespace", "n" * 64),
    ("--build-namespace", "Bad_Namespace"),
    ("--invalid-message-topic", "."),
    ("--dead-letter-topic", ".."),
    ("--test-message-output-topic", "t" * 250),
    ("--kafka-bootstrap-servers", "broker:0"),
    ("--kafka-bootstrap-servers", "SASL_SSL://user:hunter2@broker:9093"),
    ("--registry", "user:hunter2@registry.example.com"),
    ("--openfaas-gateway", "http://admin:hunter2@gateway:99999"),
    ("--connector-image", "docker.io/ustmico/kafka-faas-connector:latest-"),
    ("--connector-image", "docker.io/ustmico/kafka-faas-connector:" + "v" * 128),
    ("--connector-command", "sh -c hunter2"),
    ("--workload-image-pull-secrets", "a,,hunter2"),
    ("--build-deadline-seconds", "hunter2"),
    ("--build-ttl-seconds", "0"),
)
BAD_DAEMON_FLAGS = (
    ("--interval", "0"),
    ("--interval", "-5"),
    ("--interval", "nan"),
    ("--interval", "inf"),
    ("--interval", "hunter2"),
    ("--concurrency", "0"),
    ("--build-concurrency", "1.5"),
    ("--max-prune-fraction", "2"),
    ("--max-prune-fraction", "NaN"),
    ("--git-timeout", "-1"),
    ("--history-retention", "0"),
    ("--topic-partitions", "0"),
    ("--listen", "127.0.0.1:65536"),
    ("--listen", "hunter2"),
    ("--lease-namespace", "l" * 64),
    ("--kafka-admin-bootstrap-servers", "SASL_SSL://user:hunter2@broker:9093"),
    ("--kafka-admin-bootstrap-servers", "broker:65536"),
    ("--repo", "https://user:hunter2@git.example.com/config.git"),
    ("--repo", "https://s3cr3t-TOKEN@git.example.com/config.git"),
    ("--conflicts", "hunter2"),
    ("--url-prefix", "mico"),
    ("--url-prefix", "/.."),
    ("--url-prefix", "/a b"),
    ("--url-prefix", "/<script>"),
    ("--topics", "hunter2"),
    ("--log-level", "hunter2"),
    ("--self-heal", "hunter2"),
)


def _variable(flag: str) -> str:
    return "MICO_" + flag.removeprefix("--").replace("-", "_").upper()


@pytest.mark.parametrize("via", ["flag", "environment"])
@pytest.mark.parametrize(("flag", "value"), BAD_SETTINGS)
def test_bad_render_setting_exits_2(flag: str, value: str, via: str) -> None:
    if via == "flag":
        result = cli("render", str(EXAMPLE), f"{flag}={value}")
    else:
        result = cli("render", str(EXAMPLE), env={_variable(flag): value})
    fails(result, "render", 2, flag, "expected")
    assert len(value) < 6 or value not in result.stderr  # short ones occur in the expected form
    if via == "environment":
        assert _variable(flag) in result.stderr


_DAEMON_ONLY = ("--interval", "--listen", "--lease-namespace", "--url-prefix")


@pytest.mark.parametrize("via", ["flag", "environment"])
@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        (command, flag, value)
        for command in ("run", "sync")
        for flag, value in BAD_DAEMON_FLAGS
        if command == "run" or flag not in _DAEMON_ONLY
    ],
)
def test_bad_daemon_flag_exits_2_before_anything_runs(
    command: str, flag: str, value: str, via: str, tmp_path: Path
) -> None:
    args = ["--repo", "git://127.0.0.1:1/x.git", "--state-db", str(tmp_path / "s.db")]
    if via == "flag":
        result = cli(command, *args, f"{flag}={value}")
    else:
        if flag == "--repo":
            args = args[2:]
        result = cli(command, *args, env={_variable(flag): value})
    fails(result, command, 2, flag)
    assert len(value) < 6 or value not in result.stderr  # short ones occur in the expected form
    assert not (tmp_path / "s.db").exists()


def test_a_flag_wins_over_a_bad_variable(tmp_path: Path) -> None:
    result = cli("render", str(EXAMPLE), "--namespace", "good", env={"MICO_NAMESPACE": "Bad_hunter2"})
    assert result.returncode == 0, result.stderr
    assert "namespace: good" in result.stdout


@pytest.mark.parametrize("command", ["run", "sync", "render", "history"])
def test_help_shows_no_value_from_the_environment(command: str) -> None:
    env = {
        "MICO_REPO": "https://user:hunter2@git.example.com/x.git",
        "MICO_REGISTRY": "user:hunter2@registry.example.com",
        "MICO_KAFKA_BOOTSTRAP_SERVERS": "SASL_SSL://user:hunter2@broker:9093",
        "MICO_OPENFAAS_GATEWAY": "http://user:hunter2@gw",
        "MICO_STATE_DB": "/tmp/hunter2.db",
        "MICO_INTERVAL": "hunter2",
    }
    result = cli(command, "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert "exit codes:" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        ["--password=hunter2"],
        ["hunter2"],
        ["--namespac=hunter2"],
        ["--force-prune=hunter2"],
        ["--repo"],
    ],
)
def test_usage_errors_echo_no_argument(extra: list[str], tmp_path: Path) -> None:
    result = cli("sync", "--repo", "git://127.0.0.1:1/x.git", "--state-db", str(tmp_path / "s.db"), *extra)
    fails(result, "sync", 2)


def test_an_unknown_command_is_not_echoed() -> None:
    fails(cli("hunter2"), "schema", 2, "invalid choice")


# -- files -----------------------------------------------------------------------------------------


def test_state_db_whose_directory_cannot_be_created(repo: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = cli("sync", "--repo", repo, "--state-db", str(tmp_path / "file" / "s.db"))
    fails(result, "sync", 2, "cannot create its directory")


def test_workdir_that_is_a_file(repo: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = cli(
        "sync", "--repo", repo, "--workdir", str(tmp_path / "file"), "--state-db", str(tmp_path / "s")
    )
    fails(result, "sync", 2, "--workdir", "not a directory")


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "blank", "fifo"])
def test_unusable_webhook_secret_file(kind: str, repo: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    if kind == "directory":
        secret.mkdir()
    elif kind == "empty":
        secret.write_bytes(b"")
    elif kind == "blank":
        secret.write_bytes(b" \n")
    elif kind == "fifo":
        os.mkfifo(secret)
    result = cli(
        "run", "--repo", repo, "--state-db", str(tmp_path / "s"), "--webhook-secret-file", str(secret)
    )
    fails(result, "run", 2, "--webhook-secret-file")


@pytest.mark.parametrize("flag", ["--ssh-key-file", "--ssh-known-hosts", "--git-ca-file"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_git_trust_and_key_files_must_be_regular_files(
    flag: str, kind: str, repo: str, tmp_path: Path
) -> None:
    given = tmp_path / "given"
    if kind == "directory":
        given.mkdir()
    result = cli("sync", "--repo", repo, "--state-db", str(tmp_path / "s"), flag, str(given))
    fails(result, "sync", 2, flag, "No such file" if kind == "missing" else "not a regular file")


def test_pinned_host_keys_and_trust_on_first_use_exclude_each_other(repo: str, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    result = cli(
        "sync",
        "--repo",
        repo,
        "--state-db",
        str(tmp_path / "s"),
        "--ssh-known-hosts",
        str(known),
        "--ssh-accept-new-host-keys",
    )
    fails(result, "sync", 2, "--ssh-known-hosts and --ssh-accept-new-host-keys: give one of them")


def test_listen_address_taken(repo: str, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        kubeconfig(f"{{server: 'https://127.0.0.1:{closed_port()}', insecure-skip-tls-verify: true}}")
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli(
            "run", "--repo", repo, "--kubeconfig", str(path), "--state-db", str(tmp_path / "s.db"),
            "--workdir", str(tmp_path / "w"), "--no-leader-election", "--topics", "off",
            "--listen", f"127.0.0.1:{taken.getsockname()[1]}",
        )  # fmt: skip
    fails(result, "run", 2, "--listen", one_line=False)
