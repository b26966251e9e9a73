"""How git is pointed at a private repository: the askpass script as git runs it, the ssh
options as ssh itself parses them (`ssh -G`, no connection), the environment git gets, and the
cause named for each refusal, from what git and ssh printed on the platform's servers."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.source.access import ASKPASS, Access, AccessError


def askpass(tmp_path: Path, prompt: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "askpass.sh"
    script.write_text(ASKPASS)
    script.chmod(0o700)
    return subprocess.run(
        [str(script), prompt], capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env}
    )


USER, PASS = "Username for 'https://git.example.com': ", "Password for 'https://u@git.example.com': "


@pytest.mark.parametrize(
    ("env", "username", "password"),
    [
        ({"MICO_GIT_USERNAME": "u", "MICO_GIT_PASSWORD": "p w"}, "u", "p w"),
        ({"MICO_GIT_PASSWORD": "token"}, "", "token"),  # a token alone: an empty username
        ({"MICO_GIT_USERNAME": "u"}, "u", None),  # no password: git reports it could not read one
        ({}, None, None),
    ],
    ids=["both", "token-only", "username-only", "nothing"],
)
def test_askpass_answers_from_the_environment_or_fails(
    env: dict[str, str], username: str | None, password: str | None, tmp_path: Path
) -> None:
    for prompt, expected in ((USER, username), (PASS, password)):
        answer = askpass(tmp_path, prompt, env)
        assert (answer.returncode == 0) == (expected is not None), (prompt, answer)
        if expected is not None:
            assert answer.stdout == expected


def test_askpass_reads_the_files_at_every_prompt(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("u\n")
    (tmp_path / "token").write_text("first\n")
    env = {
        "MICO_GIT_USERNAME_FILE": str(tmp_path / "user"),
        "MICO_GIT_PASSWORD_FILE": str(tmp_path / "token"),
    }
    assert askpass(tmp_path, USER, env).stdout == "u\n"  # git reads one line
    assert askpass(tmp_path, PASS, env).stdout == "first\n"
    (tmp_path / "token").write_text("rotated\n")
    assert askpass(tmp_path, PASS, env).stdout == "rotated\n"
    (tmp_path / "token").unlink()
    assert askpass(tmp_path, PASS, env).returncode != 0


def ssh_config(command: str) -> dict[str, str]:
    """What ssh makes of the options in `command` (`ssh -G`: the configuration, no connection)."""
    arguments = shlex.split(command)
    assert arguments[0] == "ssh"
    printed = subprocess.run(
        ["ssh", "-G", *arguments[1:], "git.example.com"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in printed.splitlines() if " " in line)


def test_pinned_host_keys_with_spaces_and_percent_signs_in_the_paths(tmp_path: Path) -> None:
    odd = tmp_path / "a dir 100%"
    workdir = odd / "clone"
    access = Access(ssh_key_file=str(odd / "id key"), ssh_known_hosts=str(odd / "known hosts"))
    config = ssh_config(access.ssh_command(workdir))
    assert config["userknownhostsfile"] == str(odd / "known hosts")
    assert config["globalknownhostsfile"] == "/dev/null"
    assert config["identityfile"] == str(odd / "id key").replace("%", "%%")  # ssh expands %% to %
    assert config["identitiesonly"] == "yes"
    assert config["stricthostkeychecking"] == "true"
    assert config["batchmode"] == "yes"
    assert config["verifyhostkeydns"] == "false"


def test_host_key_modes(tmp_path: Path) -> None:
    strict = ssh_config(Access().ssh_command(tmp_path))
    assert strict["stricthostkeychecking"] == "true"
    assert "/dev/null" not in strict["globalknownhostsfile"]  # the system's known hosts
    first_use = ssh_config(Access(ssh_accept_new_host_keys=True).ssh_command(tmp_path))
    assert first_use["stricthostkeychecking"] == "accept-new"
    assert first_use["userknownhostsfile"] == str(tmp_path / "known_hosts")


def test_a_path_ssh_cannot_be_given_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AccessError, match=r"--ssh-known-hosts .*ssh cannot be given a path with"):
        Access(ssh_known_hosts=str(tmp_path / 'a"b')).check(tmp_path)
    with pytest.raises(AccessError, match="--workdir"):
        Access(ssh_accept_new_host_keys=True).check(tmp_path / 'x"y')
    Access(ssh_known_hosts=str(tmp_path / "a b%")).check(tmp_path / 'x"y')  # the workdir is not used


def test_git_gets_no_config_and_no_switch_that_skips_verification(tmp_path: Path) -> None:
    inherited = {
        "PATH": "/usr/bin",
        "GIT_SSL_NO_VERIFY": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.sslVerify",
        "GIT_CONFIG_VALUE_0": "false",
        "GIT_CONFIG_PARAMETERS": "'credential.helper'='store'",
        "MICO_GIT_PASSWORD": "token",
    }
    env = Access(ca_file="ca.pem").environment(tmp_path, inherited)
    assert "GIT_SSL_NO_VERIFY" not in env
    assert (
        not {"GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0", "GIT_CONFIG_PARAMETERS"}
        & env.keys()
    )
    assert (env["GIT_CONFIG_NOSYSTEM"], env["GIT_CONFIG_GLOBAL"]) == ("1", os.devnull)
    assert env["GIT_SSL_CAINFO"] == os.path.abspath("ca.pem")
    assert env["MICO_GIT_PASSWORD"] == "token"  # for the askpass script, never an argument
    assert (tmp_path / "askpass.sh").read_text() == ASKPASS
    (tmp_path / "askpass.sh").write_text("#!/bin/sh\necho an older release\n")
    Access().environment(tmp_path, inherited)
    assert (tmp_path / "askpass.sh").read_text() == ASKPASS


# What git and ssh printed on the platform's servers (hack/platform/platform.py), one per refusal.
CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
Host key for [127.0.0.1]:46805 has changed and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.
"""
UNKNOWN_HOST = """No ED25519 host key is known for [127.0.0.1]:46805 and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.
"""
DENIED = "root@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n"
UNVERIFIED = (
    "fatal: unable to access 'https://127.0.0.1:51841/git/x.git/': server certificate verification failed. "
    "CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none\n"
)


def test_each_refusal_is_named_with_the_setting_to_change(tmp_path: Path) -> None:
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("key\n")
    known.write_text("hosts\n")
    pinned = Access(ssh_key_file=str(key), ssh_known_hosts=str(known))

    def cause(access: Access, stderr: str, env: dict[str, str] | None = None) -> str | None:
        return access.refusal(stderr, tmp_path / "clone", env or {})

    assert "refused the username and password" in str(
        cause(Access(), "fatal: Authentication failed for 'https://h/x.git/'\n")
    )
    unread = "fatal: could not read Username for 'https://h': terminal prompts disabled\n"
    assert "a username and password and none are given" in str(cause(Access(), unread))
    gone = {"MICO_GIT_PASSWORD_FILE": str(tmp_path / "gone")}
    assert cause(Access(), unread, gone) == (
        f"MICO_GIT_PASSWORD_FILE {tmp_path / 'gone'} cannot be read: No such file or directory"
    )
    no_password = "fatal: could not read Password for 'https://u@h': terminal prompts disabled\n"
    assert "asks for a password and none is given" in str(cause(Access(), no_password))
    assert "could not be verified with the system's CAs (server certificate verification failed." in str(
        cause(Access(), UNVERIFIED)
    )
    assert f"with the CA in --git-ca-file {key} and the system's" in str(
        cause(Access(ca_file=str(key)), UNVERIFIED)
    )
    assert f"is not the one known for it in {known}" in str(cause(pinned, CHANGED))
    assert f"is not in --ssh-known-hosts {known}" in str(cause(pinned, UNKNOWN_HOST))
    assert "is not known: pin it with --ssh-known-hosts" in str(cause(Access(), UNKNOWN_HOST))
    assert f"the ssh server refused the key in --ssh-key-file {key}" in str(cause(pinned, DENIED))
    assert "refused every key offered (no --ssh-key-file)" in str(cause(Access(), DENIED))
    unprotected = "WARNING: UNPROTECTED PRIVATE KEY FILE!\n" + DENIED
    assert "others may read it" in str(cause(pinned, unprotected))
    assert "ssh cannot load" in str(cause(pinned, f'Load key "{key}": error in libcrypto\n' + DENIED))
    known.unlink()
    assert f"--ssh-known-hosts {known} cannot be read" in str(cause(pinned, UNKNOWN_HOST))
    key.unlink()
    assert f"--ssh-key-file {key} cannot be read: No such file or directory" in str(cause(pinned, DENIED))
    assert cause(pinned, "fatal: remote error: access denied or repository not exported\n") is None


def test_a_fifo_in_place_of_a_key_or_credential_file_does_not_hold_the_run(tmp_path: Path) -> None:
    """Only after a refusal are the files looked at; a FIFO nobody writes must not block that."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    found: list[str | None] = []
    unread = "fatal: could not read Username for 'https://h': terminal prompts disabled\n"
    worker = threading.Thread(
        target=lambda: found.extend(
            [
                Access(ssh_key_file=str(fifo)).refusal(DENIED, tmp_path, {}),
                Access().refusal(unread, tmp_path, {"MICO_GIT_PASSWORD_FILE": str(fifo)}),
            ]
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "opening the FIFO blocked"
    assert "the ssh server refused the key in --ssh-key-file" in str(found[0])
    assert "none are given" in str(found[1])
