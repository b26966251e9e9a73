"""Fetch the config repository with git and read the config at the fetched commit.

The working copy is a bare-ish cache: we fetch the wanted ref (a branch, a tag or a pinned
commit) and read files straight from the commit's tree, never checking out. The first fetch is
shallow; later ones are incremental, so a force-push can be recognised. Credentials come from
files or environment variables through GIT_ASKPASS / GIT_SSH_COMMAND and appear in no
command line, log or error message.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.redact import redact
from reconciler.source.files import SourceError, read_revision, shown
from reconciler.spec.problems import quote

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_ASKPASS = """#!/bin/sh
# git asks for credentials; answer from MICO_GIT_{USERNAME,PASSWORD}[_FILE] of the environment
case "$1" in
  Username*)
    if [ -n "${MICO_GIT_USERNAME_FILE:-}" ]; then cat "$MICO_GIT_USERNAME_FILE"
    else printf '%s' "${MICO_GIT_USERNAME:-}"; fi ;;
  *)
    if [ -n "${MICO_GIT_PASSWORD_FILE:-}" ]; then cat "$MICO_GIT_PASSWORD_FILE"
    else printf '%s' "${MICO_GIT_PASSWORD:-}"; fi ;;
esac
"""


@dataclass(frozen=True)
class Snapshot:
    """The config at one commit."""

    revision: str
    files: dict[str, bytes]
    #: The ref moved to a commit that does not descend from the previous one (a force-push).
    rewritten: bool = False


@dataclass
class GitSource:
    url: str
    ref: str = "main"
    path: str = "."
    workdir: Path = Path(".mico-reconciler/repo")
    timeout: float = 120
    ssh_key_file: str | None = None

    def fetch(self) -> Snapshot:
        repo = self._repo()
        env = self._environment()
        wanted = self.ref
        if not wanted or wanted.startswith("-") or not wanted.isprintable():
            raise SourceError(f"{quote(wanted)}: not a branch, tag or commit id")
        first = self._previous(repo) is None
        args = ["--force", "--no-tags", "--", "origin", wanted]  # `--`: a ref is never an option
        if first and not _COMMIT.match(wanted):
            args.insert(0, "--depth=1")
        try:
            repo.git.fetch(*args, env=env, kill_after_timeout=self.timeout)
            revision = repo.git.rev_parse("--verify", "FETCH_HEAD^{commit}")
        except git.GitCommandError as err:
            raise SourceError(self._explain(err)) from err
        previous = self._previous(repo)
        rewritten = bool(previous and previous != revision and not self._descends(repo, previous, revision))
        repo.git.update_ref("refs/mico/fetched", revision)
        _, files = read_revision(self.workdir, revision, self.path)
        return Snapshot(revision, files, rewritten)

    def at(self, revision: str) -> dict[str, bytes]:
        """The config at a commit fetched before; a clone that lacks it (a restart on an empty
        work directory) fetches that commit by id."""
        if not _COMMIT.match(revision):
            raise SourceError(f"{quote(revision)}: not a commit id")
        repo = self._repo()
        try:
            repo.git.cat_file("-e", f"{revision}^{{commit}}")
        except git.GitCommandError:
            try:
                repo.git.fetch(
                    "--depth=1",
                    "--no-tags",
                    "--",
                    "origin",
                    revision,
                    env=self._environment(),
                    kill_after_timeout=self.timeout,
                )
            except git.GitCommandError as err:
                raise SourceError(self._explain(err, revision)) from err
        return read_revision(self.workdir, revision, self.path)[1]

    def _repo(self) -> git.Repo:
        try:
            if (self.workdir / "HEAD").exists():
                repo = git.Repo(self.workdir)
                if repo.remotes.origin.url != self.url:
                    repo.remotes.origin.set_url(self.url)
                return repo
            self.workdir.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.workdir, bare=True)
            repo.create_remote("origin", self.url)
        except (git.InvalidGitRepositoryError, git.GitCommandError, OSError) as err:
            raise SourceError(f"{shown(str(self.workdir))}: cannot use it as the git work directory") from err
        return repo

    @staticmethod
    def _previous(repo: git.Repo) -> str | None:
        """The commit fetched last time (kept as a ref, so it survives a restart)."""
        try:
            return str(repo.git.rev_parse("--verify", "--quiet", "refs/mico/fetched"))
        except git.GitCommandError:
            return None

    @staticmethod
    def _descends(repo: git.Repo, old: str, new: str) -> bool:
        try:
            repo.git.merge_base("--is-ancestor", old, new)
        except git.GitCommandError:
            return False
        return True

    def _environment(self) -> dict[str, str]:
        askpass = self.workdir / "askpass.sh"
        if not askpass.exists():
            askpass.write_text(_ASKPASS)
            askpass.chmod(stat.S_IRWXU)
        env = {"GIT_ASKPASS": str(askpass), "GIT_TERMINAL_PROMPT": "0"}
        if self.ssh_key_file:
            known_hosts = self.workdir / "known_hosts"
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(self.ssh_key_file)} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={shlex.quote(str(known_hosts))}"
            )
        return {k: v for k, v in env.items() if v} | {
            k: v for k, v in os.environ.items() if k.startswith("MICO_GIT_") and k not in env
        }

    def _explain(self, err: git.GitCommandError, ref: str | None = None) -> str:
        stderr = redact(str(err.stderr or "")).strip().replace("\n", " ")
        where = redact(self.url)
        ref = self.ref if ref is None else ref
        if "couldn't find remote ref" in stderr or "not our ref" in stderr:
            return f"{quote(ref)} does not exist in {where} (deleted branch or tag?): {stderr}"
        if err.status in (-9, -15) or "timed out" in stderr.lower():
            return f"fetching {where} timed out after {self.timeout:.0f}s"
        return f"fetching {quote(ref)} from {where} failed: {stderr or err.status}"
