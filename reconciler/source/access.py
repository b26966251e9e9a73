"""How git reaches a private config repository, and why the remote refused it.

Credentials reach git only through the askpass script, which reads them from the environment
or from files at every fetch (so a token rotated on disk is used at the next one), never
through an argument list or a credential helper. TLS is always verified and host keys are
always checked: the user's and the system's git config cannot turn either off.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.source.files import shown

ASKPASS = """#!/bin/sh
# git asks for credentials; answer from MICO_GIT_{USERNAME,PASSWORD}[_FILE] of the environment.
# Nothing given: fail, so that git reports that it could not read them (not a refusal).
given() { [ -n "${MICO_GIT_PASSWORD_FILE:-}${MICO_GIT_PASSWORD:-}" ]; }
case "$1" in
  Username*)
    given || [ -n "${MICO_GIT_USERNAME_FILE:-}${MICO_GIT_USERNAME:-}" ] || exit 1
    if [ -n "${MICO_GIT_USERNAME_FILE:-}" ]; then exec cat "$MICO_GIT_USERNAME_FILE"; fi
    printf '%s' "${MICO_GIT_USERNAME:-}" ;;
  *)
    given || exit 1
    if [ -n "${MICO_GIT_PASSWORD_FILE:-}" ]; then exec cat "$MICO_GIT_PASSWORD_FILE"; fi
    printf '%s' "${MICO_GIT_PASSWORD:-}" ;;
esac
"""
#: What git must not take from our environment: a switch that skips TLS verification, and
#: (as every GIT_CONFIG_* variable) config besides the clone's own.
_DROPPED = "GIT_SSL_NO_VERIFY"
_CREDENTIALS = ("MICO_GIT_USERNAME", "MICO_GIT_PASSWORD")
_CURL_REASON = re.compile(r"unable to access '[^']*': (.*)")


class AccessError(ValueError):
    """A path ssh cannot be given (it would read another file)."""


@dataclass(frozen=True)
class Access:
    ssh_key_file: str | None = None
    #: The host keys ssh accepts (pinning); without it, the system's known hosts, or with
    #: `ssh_accept_new_host_keys` the first key seen (kept in the work directory).
    ssh_known_hosts: str | None = None
    ssh_accept_new_host_keys: bool = False
    #: CA certificates an https server's certificate may chain to, besides the system's.
    ca_file: str | None = None

    def check(self, workdir: Path) -> None:
        """ssh splits option values at spaces unless quoted, and a quoted one cannot hold '"'."""
        for flag, path in (
            ("--ssh-key-file", self.ssh_key_file),
            ("--ssh-known-hosts", self.ssh_known_hosts),
            ("--workdir", str(workdir) if self.ssh_accept_new_host_keys else None),
        ):
            if path and '"' in os.path.abspath(path):
                raise AccessError(f"{flag} {shown(path)}: ssh cannot be given a path with '\"'")

    def environment(self, workdir: Path, inherited: dict[str, str]) -> dict[str, str]:
        """git's whole environment: `inherited` without what would weaken the checks, and no
        git config but the clone's own. Absolute paths: git may run them from elsewhere."""
        askpass = Path(os.path.abspath(workdir)) / "askpass.sh"
        if contents(askpass) != ASKPASS.encode():  # also the script of an older release
            askpass.write_text(ASKPASS)
            askpass.chmod(stat.S_IRWXU)
        env = {k: v for k, v in inherited.items() if k != _DROPPED and not k.startswith("GIT_CONFIG")}
        env |= {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ASKPASS": str(askpass),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": self.ssh_command(workdir),
        }
        if self.ca_file:
            env["GIT_SSL_CAINFO"] = os.path.abspath(self.ca_file)
        return env

    def ssh_command(self, workdir: Path) -> str:
        """ssh that never prompts and checks the server's host key: against --ssh-known-hosts
        only, or the system's known hosts, or (opted in) trusting the first key it sees."""
        options = ["BatchMode=yes", "VerifyHostKeyDNS=no", "KnownHostsCommand=none"]
        if self.ssh_key_file:
            options += [f"IdentityFile={_ssh_path(self.ssh_key_file)}", "IdentitiesOnly=yes"]
        if self.ssh_known_hosts:
            options += [
                "StrictHostKeyChecking=yes",
                f"UserKnownHostsFile={_ssh_path(self.ssh_known_hosts)}",
                "GlobalKnownHostsFile=/dev/null",
            ]
        elif self.ssh_accept_new_host_keys:
            options += [
                "StrictHostKeyChecking=accept-new",
                f"UserKnownHostsFile={_ssh_path(str(workdir / 'known_hosts'))}",
            ]
        else:
            options += ["StrictHostKeyChecking=yes"]
        return " ".join(["ssh", *(f"-o {shlex.quote(option)}" for option in options)])

    def refusal(self, stderr: str, workdir: Path, inherited: dict[str, str]) -> str | None:
        """The cause when the server, or git or ssh on our side, refused the connection, named
        with the setting to change (never with a secret); None for any other failure."""
        for cause in (
            self._credentials(stderr, inherited),
            self._certificate(stderr),
            self._host_key(stderr, workdir),
            self._key(stderr),
        ):
            if cause:
                return cause
        return None

    @staticmethod
    def _credentials(stderr: str, inherited: dict[str, str]) -> str | None:
        names = "MICO_GIT_USERNAME and MICO_GIT_PASSWORD, or their _FILE variants"
        if "could not read Username" in stderr or "could not read Password" in stderr:
            for variable in (f"{name}_FILE" for name in _CREDENTIALS):
                unreadable = _unreadable(inherited.get(variable))
                if unreadable:
                    return f"{variable} {shown(inherited[variable])} cannot be read: {unreadable}"
            if "could not read Password" in stderr:
                return (
                    "the server asks for a password and none is given "
                    "(MICO_GIT_PASSWORD or MICO_GIT_PASSWORD_FILE)"
                )
            return f"the server asks for a username and password and none are given ({names})"
        if "Authentication failed" in stderr or "The requested URL returned error: 401" in stderr:
            return f"the server refused the username and password ({names}): a wrong or expired token?"
        return None

    def _certificate(self, stderr: str) -> str | None:
        reason = _CURL_REASON.search(stderr)
        if not reason or "certificate" not in reason[1].lower():
            return None
        trusted = f"the CA in --git-ca-file {shown(self.ca_file)} and " if self.ca_file else ""
        return (
            f"the server's TLS certificate could not be verified with {trusted}the system's CAs "
            f"({shown(reason[1].strip())}); if a CA of your own signed it, give it with --git-ca-file"
        )

    def _host_key(self, stderr: str, workdir: Path) -> str | None:
        pinned = self.ssh_known_hosts or (
            str(workdir / "known_hosts") if self.ssh_accept_new_host_keys else None
        )
        if self.ssh_known_hosts and "Host key verification failed" in stderr:
            unreadable = _unreadable(self.ssh_known_hosts)
            if unreadable:
                return f"--ssh-known-hosts {shown(self.ssh_known_hosts)} cannot be read: {unreadable}"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            where = f" in {shown(pinned)}" if pinned else ""
            return (
                f"the ssh server's host key is not the one known for it{where}: the server was "
                "replaced, or someone is in between; the connection was refused"
            )
        if "host key is known for" in stderr or "Host key verification failed" in stderr:
            where = f"in --ssh-known-hosts {shown(self.ssh_known_hosts)}" if self.ssh_known_hosts else "known"
            return (
                f"the ssh server's host key is not {where}: pin it with --ssh-known-hosts "
                "(or trust the first key seen with --ssh-accept-new-host-keys)"
            )
        return None

    def _key(self, stderr: str) -> str | None:
        if "Permission denied (publickey" not in stderr:
            return None
        if not self.ssh_key_file:
            return "the ssh server refused every key offered (no --ssh-key-file)"
        flag = f"--ssh-key-file {shown(self.ssh_key_file)}"
        unreadable = _unreadable(self.ssh_key_file)
        if unreadable:
            return f"{flag} cannot be read: {unreadable}"
        if "UNPROTECTED PRIVATE KEY FILE" in stderr:
            return f"ssh refuses {flag}: others may read it (give it mode 0600, or make it another user's)"
        if "Load key" in stderr or "no such identity" in stderr:
            return f"ssh cannot load {flag}: not an unencrypted private key?"
        return f"the ssh server refused the key in {flag}: not a deploy key of this repository?"


def _ssh_path(path: str) -> str:
    """A path as an ssh option's value: quoted (spaces), '%' escaped (ssh expands tokens)."""
    return '"' + os.path.abspath(path).replace("%", "%%") + '"'


def _unreadable(path: str | None) -> str | None:
    """Why `path` cannot be read (a mounted Secret or ConfigMap gone), or None. Opened without
    blocking: a FIFO without a writer would otherwise hold the run forever."""
    if not path:
        return None
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def contents(path: Path) -> bytes | None:
    """The file's bytes, or None when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError:
        return None
