"""Private config repositories: the platform's https server (TLS from a CA of its own, basic
authentication) and sshd (deploy keys, a pinned host key), with real credentials.

Each refusal (a wrong password, no key or an unknown one, a CA or host key not trusted) must
fail the run with one error that names the cause, apply nothing, and leave the credential in
no log, history, metric, page, API answer, file or process argument list.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import example_data
from tests.integration.conftest import (
    ConfigRepo,
    Daemon,
    Platform,
    deployments,
    reconciler_command,
)
from tests.integration.test_platform import eventually

EXAMPLE_DEPLOYMENTS = 5  # four services and the Kafka-FaaS-connector
#: A run every 2 s, so that a change on the server or on disk is seen without a webhook.
DAEMON_FLAGS = ("--no-leader-election", "--interval", "2")


def repo_name(config_repo: ConfigRepo) -> str:
    return config_repo.url.rsplit("/", 1)[1]


@pytest.fixture
def https_user(platform: Platform) -> tuple[str, Path]:
    """A user of the https server of this test's own, and the file of its token."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    return name, platform.git_user(name)


def mounted(directory: Path, files: dict[str, str]) -> dict[str, str]:
    """`files` written as a Secret volume is: read-only files the daemon reads by path; the
    variables that point the daemon at them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        replace(directory / name, text)
    return {
        "MICO_GIT_USERNAME_FILE": str(directory / "username"),
        "MICO_GIT_PASSWORD_FILE": str(directory / "password"),
    }


def replace(path: Path, text: str) -> None:
    """As the kubelet updates a mounted Secret: the new file renamed over the old one."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    fresh.chmod(0o400)
    fresh.replace(path)


def sync(
    platform: Platform, repo: str, namespace: str, state: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`sync --once` under strace: the argument lists of the programs it ran end in
    `state/execve.trace`, which the callers search for credentials with the other files."""
    state.mkdir(parents=True, exist_ok=True)
    command = reconciler_command(
        "sync --once", platform, repo, namespace, state_db=state / "sync.db", workdir=state / "repo"
    )
    with subprocess.Popen(
        [*traced(state / "execve.trace"), *command, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # strace ignores SIGTERM and leaves its tracee running: end the group
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def traced(trace: Path) -> tuple[str, ...]:
    """A command prefix: strace writes the argument list of every program the command and its
    children (git, ssh, askpass) run to `trace` (not their environments); with seccomp, only
    execve stops a process."""
    return ("strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=execve", "-s", "100000", "-o", str(trace))


def new_key(path: Path) -> None:
    """An ed25519 key pair no server knows: `path` and `path.pub`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def assert_secret_nowhere(secret: str, places: dict[str, bytes]) -> None:
    leaks = [name for name, data in places.items() if secret.encode() in data]
    assert not leaks, f"the credential shows in {leaks}"


def daemon_outputs(daemon: Daemon, tmp_path: Path, *, skip: tuple[Path, ...]) -> dict[str, bytes]:
    """What the daemon shows and keeps: its answers, pages and metrics, and every file under the
    test's directory (its log, the history database and its WAL, the clone, the trace of every
    program's arguments) except `skip` (the credential files themselves)."""
    places = {
        path: daemon.get(path)[1]
        for path in (
            "/metrics",
            "/api/applications",
            "/api/history?limit=100",
            "/api/health",
            "/",
            "/history",
        )
    }
    for file in tmp_path.rglob("*"):
        if file.is_file() and not any(file.is_relative_to(s) for s in skip):
            places[str(file)] = file.read_bytes()
    return places


def json_lines(text: str) -> list[dict[str, Any]]:
    """The structured log records in `text`."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def after(failed: dict[str, Any], run: dict[str, Any]) -> bool:
    """A run that succeeded after `failed` began (repeated failures stay on its row)."""
    return bool(run["id"] > failed["id"] and run["outcome"] == "succeeded")


def first_run(daemon: Daemon) -> dict[str, object]:
    return eventually(lambda: next((r for r in daemon.runs() if r["finished"]), None), 90, "a finished run")


# -- https ---------------------------------------------------------------------------------------


def test_https_with_a_token_from_files_converges_and_a_rotated_token_works_at_the_next_run(
    platform: Platform,
    config_repo: ConfigRepo,
    start_daemon: Callable[..., Daemon],
    https_user: tuple[str, Path],
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    user, server_token = https_user
    config_repo.push(example_data())
    secret = tmp_path / "secret"
    old_token = server_token.read_text()
    env = mounted(secret, {"username": user, "password": old_token})
    url = f"{platform.git_https_url}/{repo_name(config_repo)}"
    trace = tmp_path / "https.trace"
    daemon = start_daemon(
        "https.db",
        *DAEMON_FLAGS,
        "--git-ca-file",
        str(platform.git_https_ca),
        repo=url,
        env=env,
        prefix=traced(trace),
    )
    run = first_run(daemon)
    assert run["outcome"] == "succeeded", run["error"]
    assert len(deployments(kube, namespace)) == EXAMPLE_DEPLOYMENTS

    # the server takes a new token; the old one fails until the mounted file has the new one
    new_token = platform.git_user(user).read_text()
    revision = config_repo.push({**example_data(), "applications": example_data()["applications"][:1]})
    failed = eventually(
        lambda: next((r for r in daemon.runs() if r["outcome"] == "failed"), None),
        60,
        "a run with the old token",
    )
    assert "refused the username and password" in failed["error"], failed["error"]
    replace(secret / "password", new_token)
    eventually(
        lambda: any(after(failed, r) and r["revision"] == revision for r in daemon.runs()),
        60,
        "a run with the rotated token, without a restart",
    )
    assert daemon.process.poll() is None
    assert "askpass.sh" in trace.read_text(), (
        "the trace holds git's programs: the check below means something"
    )
    for token in (old_token, new_token):
        assert_secret_nowhere(token, daemon_outputs(daemon, tmp_path, skip=(secret,)))


# -- ssh -----------------------------------------------------------------------------------------


def test_ssh_with_a_deploy_key_and_a_pinned_host_key_converges(
    platform: Platform,
    config_repo: ConfigRepo,
    start_daemon: Callable[..., Daemon],
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Then the mounted key goes missing (a deleted Secret): the runs fail naming the file, and
    work again once it is back, without a restart."""
    config_repo.push(example_data())
    deploy_key = platform.deploy_key(repo_name(config_repo))
    key = tmp_path / "secret" / "id"
    key.parent.mkdir()
    shutil.copy(deploy_key, key)
    private = key.read_text().strip().splitlines()[1]  # a line of the key's body
    url = f"{platform.git_ssh_url}/{repo_name(config_repo)}"
    flags = ("--ssh-key-file", str(key), "--ssh-known-hosts", str(platform.git_ssh_known_hosts))
    trace = tmp_path / "ssh.trace"
    daemon = start_daemon("ssh.db", *DAEMON_FLAGS, *flags, repo=url, prefix=traced(trace))
    run = first_run(daemon)
    assert run["outcome"] == "succeeded", run["error"]
    assert len(deployments(kube, namespace)) == EXAMPLE_DEPLOYMENTS
    assert '"ssh", "-o"' in trace.read_text(), "the trace holds ssh's arguments"
    assert not (tmp_path / "ssh.db-repo" / "known_hosts").exists(), "a pinned host key is never learned"

    key.unlink()
    revision = config_repo.push({**example_data(), "applications": example_data()["applications"][:1]})
    failed = eventually(
        lambda: next((r for r in daemon.runs() if r["outcome"] == "failed"), None),
        60,
        "a run without the key",
    )
    assert f"--ssh-key-file {key} cannot be read: No such file or directory" in failed["error"]
    shutil.copy(deploy_key, key)
    eventually(
        lambda: any(after(failed, r) and r["revision"] == revision for r in daemon.runs()),
        60,
        "a run with the key back, without a restart",
    )
    assert_secret_nowhere(private, daemon_outputs(daemon, tmp_path, skip=(key.parent,)))


# -- refusals: one clear error, nothing applied, no secret shown ---------------------------------


def test_refusals_name_their_cause_apply_nothing_and_show_no_secret(
    platform: Platform,
    config_repo: ConfigRepo,
    https_user: tuple[str, Path],
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    config_repo.push(example_data())
    name = repo_name(config_repo)
    https, ssh = f"{platform.git_https_url}/{name}", f"{platform.git_ssh_url}/{name}"
    user, token = https_user
    wrong = f"wrong-{uuid.uuid4().hex}"
    key = platform.deploy_key(name)
    unknown_key = tmp_path / "unknown-key"
    new_key(unknown_key)
    other_host = tmp_path / "other-host"
    new_key(other_host)
    changed_hosts = tmp_path / "changed_known_hosts"
    host = platform.git_ssh_known_hosts.read_text().split()[0]
    changed_hosts.write_text(f"{host} {' '.join(other_host.with_suffix('.pub').read_text().split()[:2])}\n")
    pinned = ("--ssh-known-hosts", str(platform.git_ssh_known_hosts))
    ca = ("--git-ca-file", str(platform.git_https_ca))
    cases = {
        "wrong password": (
            https,
            ca,
            {"username": user, "password": wrong},
            "the server refused the username and password (MICO_GIT_USERNAME and MICO_GIT_PASSWORD",
        ),
        "no credentials": (
            https,
            ca,
            None,
            "the server asks for a username and password and none are given",
        ),
        "unknown CA": (
            https,
            (),
            {"username": user, "password": token.read_text()},
            "the server's TLS certificate could not be verified with the system's CAs (server "
            "certificate verification failed.",
        ),
        "CA of another server": (
            https,
            ("--git-ca-file", str(platform.kubeconfig.parent / "pki" / "ca.crt")),
            {"username": user, "password": token.read_text()},
            "the server's TLS certificate could not be verified with the CA in --git-ca-file",
        ),
        "no key": (ssh, pinned, None, "the ssh server refused every key offered (no --ssh-key-file)"),
        "unknown key": (
            ssh,
            ("--ssh-key-file", str(unknown_key), *pinned),
            None,
            "the ssh server refused the key in --ssh-key-file",
        ),
        "changed host key": (
            ssh,
            ("--ssh-key-file", str(key), "--ssh-known-hosts", str(changed_hosts)),
            None,
            "the ssh server's host key is not the one known for it in",
        ),
        "unknown host": (
            ssh,
            ("--ssh-key-file", str(key)),
            None,
            "the ssh server's host key is not known: pin it with --ssh-known-hosts",
        ),
    }
    secrets = [
        wrong,
        token.read_text(),
        key.read_text().splitlines()[1],
        unknown_key.read_text().splitlines()[1],
    ]
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[http]\n\tsslVerify = false\n[credential]\n\thelper = store\n")
    weakening = {"HOME": str(home), "GIT_SSL_NO_VERIFY": "1", "GIT_CONFIG_GLOBAL": str(home / ".gitconfig")}
    for case, (url, flags, files, cause) in cases.items():
        state = tmp_path / "runs" / case.replace(" ", "-")
        env = mounted(tmp_path / "secret" / state.name, files) if files else {}
        env |= weakening  # none of it may turn a check off, nor store a credential
        result = sync(platform, url, namespace, state, *flags, env=env)
        assert result.returncode == 4, (case, result.stdout, result.stderr)
        errors = [record["error"] for record in json_lines(result.stderr) if record.get("error")]
        assert len(errors) == 1, (case, result.stderr)
        assert cause in errors[0], case
        assert "Traceback" not in result.stderr
        assert '"git", "--git-dir=' in (state / "execve.trace").read_text(), case
        assert not (home / ".git-credentials").exists(), "a credential helper stored the token"
        places = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
        places |= {str(f): f.read_bytes() for f in state.rglob("*") if f.is_file()}
        for secret in secrets:
            assert_secret_nowhere(secret, places)
    assert deployments(kube, namespace) == {}, "a refused fetch applies nothing"


def test_trust_on_first_use_pins_the_first_host_key_in_the_work_directory(
    platform: Platform, config_repo: ConfigRepo, namespace: str, tmp_path: Path
) -> None:
    """Opted in: the key seen first is kept and from then on required, like a pinned one."""
    config_repo.push(example_data())
    name = repo_name(config_repo)
    url = f"{platform.git_ssh_url}/{name}"
    flags = ("--ssh-key-file", str(platform.deploy_key(name)), "--ssh-accept-new-host-keys")
    first = sync(platform, url, namespace, tmp_path, *flags)
    assert first.returncode == 0, first.stderr
    learned = (tmp_path / "repo" / "known_hosts").read_text().split()
    assert learned[1:3] == platform.git_ssh_known_hosts.read_text().split()[1:3]
    other = tmp_path / "other-host"
    new_key(other)
    swapped = [learned[0], *other.with_suffix(".pub").read_text().split()[:2]]
    (tmp_path / "repo" / "known_hosts").write_text(" ".join(swapped) + "\n")
    second = sync(platform, url, namespace, tmp_path, *flags)
    assert second.returncode == 4
    (error,) = [r["error"] for r in json_lines(second.stderr) if r.get("error")]
    assert "the ssh server's host key is not the one known for it in" in error
    assert error.count("known_hosts") == 1
    both = sync(
        platform, url, namespace, tmp_path, *flags, "--ssh-known-hosts", str(platform.git_ssh_known_hosts)
    )
    assert both.returncode == 2
    assert "give one of them" in both.stderr
