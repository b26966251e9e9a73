"""Fetch the config repository with git and read the config at the fetched commit.

The working copy is a bare-ish cache: we fetch the wanted ref (a branch, a tag or a pinned
commit) and read files straight from the commit's tree, never checking out. The first fetch is
shallow; later ones are incremental, so a force-push can be recognised. Credentials come from
files or environment variables through GIT_ASKPASS / GIT_SSH_COMMAND and appear in no
command line, log or error message.

Every git command that talks to the remote runs in a process group of its own, and the whole
group (git, its remote helper, ssh, index-pack) is killed once `timeout` has passed. A clone
that git cannot use any more (a missing HEAD, objects or refs it cannot read, a lock left by a
killed git) is moved aside to `<workdir>.broken` and cloned again, once per fetch.
"""

from __future__ import annotations

import configparser
import contextlib
import glob
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import git

from reconciler.redact import redact
from reconciler.source.access import Access, contents
from reconciler.source.files import SourceError, shown
from reconciler.source.revision import DamagedRepositoryError, git_reason, read_revision, reason_line
from reconciler.spec.problems import quote

log = logging.getLogger("mico_reconciler.source")
T = TypeVar("T")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: Written into a damaged clone before it is moved aside: why, and that it is this reconciler's.
DAMAGED_NOTE = "mico-damaged.txt"
#: How long a killed git's pipes are waited for (a process that left its group may hold them).
_REAP_SECONDS = 5
#: Distinct lines of git's stderr kept in an error message, and their length.
_STDERR_LINES, _STDERR_CHARS = 3, 500


@dataclass(frozen=True)
class Commit:
    """What people recognise a revision by: the first line of its message, its author's name
    (never the e-mail address) and when it was committed (seconds since the epoch)."""

    summary: str
    author: str
    committed: float


@dataclass(frozen=True)
class Snapshot:
    """The config at one commit."""

    revision: str
    files: dict[str, bytes]
    #: The ref moved to a commit that does not descend from the previous one (a force-push).
    rewritten: bool = False
    #: The commit fetched before this one (None on the first fetch into a clone, also after the
    #: clone was set aside as damaged).
    previous: str | None = None
    commit: Commit | None = None


@dataclass
class GitSource:
    url: str
    ref: str = "main"
    path: str = "."
    workdir: Path = Path(".mico-reconciler/repo")
    timeout: float = 120
    access: Access = field(default_factory=Access)
    #: What this process already knows of the clone, so a fetch that brings nothing new runs
    #: two git processes (origin's URL, the fetch) and reads nothing: the commit fetched last,
    #: the config read at it, the blobs that config is made of.
    _fetched: str | None = field(default=None, init=False, repr=False)
    _config: tuple[str, dict[str, bytes]] | None = field(default=None, init=False, repr=False)
    _blobs: dict[str, bytes] = field(default_factory=dict, init=False, repr=False)
    _commit: tuple[str, Commit] | None = field(default=None, init=False, repr=False)
    #: The clone, kept open between fetches: its `git cat-file` processes answer in microseconds.
    _open: git.Repo | None = field(default=None, init=False, repr=False)

    def fetch(self) -> Snapshot:
        wanted = self.ref
        if not wanted or wanted.startswith("-") or not wanted.isprintable():
            raise SourceError(f"{quote(wanted)}: not a branch, tag or commit id")
        return self._mended(self._fetch)

    def at(self, revision: str) -> dict[str, bytes]:
        """The config at a commit fetched before; a clone that lacks it (a restart on an empty
        work directory) fetches that commit by id."""
        if not _COMMIT.match(revision):
            raise SourceError(f"{quote(revision)}: not a commit id")
        return self._mended(lambda repo: self._at(repo, revision))

    # -- one attempt on the clone ------------------------------------------------------------------

    def _fetch(self, repo: git.Repo) -> Snapshot:
        previous = self._fetched or self._previous(repo)
        args = ["fetch", "--force", "--no-tags", "--", "origin", self.ref]  # `--`: a ref is never an option
        if previous is None and not _COMMIT.match(self.ref):
            args.insert(1, "--depth=1")
        self._remote(args, self.ref)
        head = self._fetch_head()
        if head is not None and (head == previous or _is_commit(repo, head)):
            revision = head  # no git process: FETCH_HEAD names a commit
        else:
            revision = self._local(repo.git.rev_parse, "--verify", "FETCH_HEAD^{commit}")
        rewritten = (
            previous is not None
            and previous != revision
            and previous not in _parents(repo, revision)  # a commit on top: the usual push
            and not self._descends(repo, previous, revision)
        )
        if revision != self._fetched:
            self._local(repo.git.update_ref, "refs/mico/fetched", revision)
            self._fetched = revision
        return Snapshot(revision, self._read(revision), rewritten, previous, self._described(repo, revision))

    def _described(self, repo: git.Repo, revision: str) -> Commit:
        """The commit's summary and author, read once per revision."""
        if self._commit is None or self._commit[0] != revision:
            try:
                commit = repo.commit(revision)
                described = Commit(
                    str(commit.summary)[:200],
                    str(commit.author.name or "")[:100],
                    float(commit.committed_date),
                )
            except (ValueError, git.GitError, git.exc.ODBError) as err:  # the clone cannot be read
                raise _DamagedError(f"git cat-file {revision}: {type(err).__name__}") from err
            self._commit = (revision, described)
        return self._commit[1]

    def _fetch_head(self) -> str | None:
        """The object FETCH_HEAD names, read from the file git writes (no process); a tag's id
        is not its commit's, which is why only equality with a known commit is trusted."""
        try:
            with open(self.workdir / "FETCH_HEAD", "rb") as head:
                first = head.readline(100)[:40].decode("ascii", errors="replace")
        except OSError:
            return None
        return first if _COMMIT.match(first) else None

    def _at(self, repo: git.Repo, revision: str) -> dict[str, bytes]:
        try:
            repo.git.cat_file("-e", f"{revision}^{{commit}}")
        except git.GitCommandError:
            self._remote(["fetch", "--depth=1", "--no-tags", "--", "origin", revision], revision)
        return self._read(revision)

    def _read(self, revision: str) -> dict[str, bytes]:
        """The config at `revision`; the one read last is kept, and of another only the files
        whose blobs changed are read."""
        if self._config is not None and self._config[0] == revision:
            return dict(self._config[1])
        try:
            files = read_revision(self.workdir, revision, self.path, self._blobs, self._open)[1]
        except DamagedRepositoryError as err:
            raise _DamagedError(str(err)) from err
        self._config = (revision, files)
        return dict(files)

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
        except git.GitCommandError as err:
            if err.status == 1:  # not an ancestor; anything else is git failing to read the clone
                return False
            raise _DamagedError(f"git merge-base: {git_reason(err)}") from err
        return True

    @staticmethod
    def _local(command: Callable[..., object], *args: str) -> str:
        """A git command that only reads or writes the clone: when it fails, the clone is damaged."""
        try:
            return str(command(*args))
        except git.GitCommandError as err:
            raise _DamagedError(f"git {' '.join(map(str, err.command[1:2]))}: {git_reason(err)}") from err

    def _remote(self, args: list[str], ref: str) -> None:
        """A git command that talks to the remote; its failure is the remote's unless the clone
        turns out damaged."""
        status, stderr = self._run(args, self._environment())
        if status != 0:  # the open clone's `git cat-file` processes must not outlive a failed fetch
            self._close()
        if status is None:
            self._remove_locks()  # the killed git held them
            raise SourceError(
                f"fetching {quote(ref)} from {redact(self.url)} timed out after {self.timeout:g}s "
                "(--git-timeout)"
            )
        if status == 0:
            return
        refusal = self.access.refusal(stderr, self.workdir, dict(os.environ))
        if refusal:
            raise SourceError(f"fetching {quote(ref)} from {redact(self.url)} failed: {refusal}")
        summary = _summary(stderr) or f"exit status {status}"
        if "couldn't find remote ref" in stderr or "not our ref" in stderr:
            gone = "removed by a force-push?" if _COMMIT.match(ref) else "deleted branch or tag?"
            raise SourceError(f"{quote(ref)} does not exist in {redact(self.url)} ({gone}): {summary}")
        damage = self._damage()
        if damage:
            raise _DamagedError(damage)
        raise SourceError(f"fetching {quote(ref)} from {redact(self.url)} failed: {summary}")

    def _run(self, args: list[str], env: dict[str, str]) -> tuple[int | None, str]:
        """(exit status, stderr) of git with `args` on the clone, in environment `env`; the
        status is None when the timeout killed it. git runs in a process group of its own,
        killed as a whole."""
        executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"  # the git gitpython runs
        command = [executable, f"--git-dir={os.path.abspath(self.workdir)}", *args]
        with subprocess.Popen(  # noqa: S603 - no shell; a ref or revision always follows `--`
            command,
            env={**env, "LC_ALL": "C", "LANGUAGE": "C"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ) as process:
            try:
                _, stderr = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.communicate(timeout=_REAP_SECONDS)
                return None, ""
        return process.returncode, redact(stderr.decode(errors="replace"))

    # -- a damaged clone ---------------------------------------------------------------------------

    def _damage(self) -> str | None:
        """Why the clone cannot be used, or None: a lock file a killed git left behind, or what
        `git fsck --connectivity-only` finds (every ref must reach commits and trees that exist
        and parse; milliseconds for a config repository). Asked only after a failed fetch."""
        locks = [*self.workdir.glob("*.lock"), *self.workdir.glob("refs/**/*.lock")]
        if locks:
            return f"a lock file was left behind: {shown(locks[0].name)}"
        status, stderr = self._run(
            ["fsck", "--connectivity-only", "--no-dangling", "--no-progress"], self._environment()
        )
        if status:
            return f"git fsck: {reason_line(stderr) or f'exit status {status}'}"
        return None

    def _remove_locks(self) -> None:
        for lock in [*self.workdir.glob("*.lock"), *self.workdir.glob("refs/**/*.lock")]:
            with contextlib.suppress(OSError):
                lock.unlink()

    def _mended(self, operation: Callable[[git.Repo], T]) -> T:
        """`operation` on the clone; a clone found damaged is set aside and cloned again, once."""
        try:
            return self._attempt(operation)
        except _DamagedError as damage:
            self._set_aside(str(damage))
        try:
            return self._attempt(operation)
        except _DamagedError as damage:
            raise SourceError(
                f"{shown(str(self.workdir))}: the git work directory is damaged, also after cloning it "
                f"again: {damage}"
            ) from damage

    def _attempt(self, operation: Callable[[git.Repo], T]) -> T:
        try:
            return operation(self._repo())
        except (OSError, git.GitError) as err:  # what else git or the file system refuses (ENOSPC...)
            raise SourceError(f"{shown(str(self.workdir))}: git could not be run: {git_reason(err)}") from err

    def _repo(self) -> git.Repo:
        """The clone, opened (or made) once and kept open; its origin checked every time."""
        if self._open is None or not (self.workdir / "HEAD").exists():
            self._close()
            self._open = self._opened()
        url = self._local(self._open.git.remote, "get-url", "--", "origin")
        if url != self.url:
            self._local(self._open.git.remote, "set-url", "--", "origin", self.url)
        return self._open

    def _close(self) -> None:
        """Close the clone and forget what was known of it: the next one may be another."""
        if self._open is not None:
            self._open.close()
            self._open = None
        self._fetched, self._config = None, None
        self._blobs.clear()

    def _opened(self) -> git.Repo:
        if (self.workdir / "HEAD").exists():
            try:
                repo = git.Repo(self.workdir)
            except git.InvalidGitRepositoryError as err:
                raise _DamagedError("git no longer takes it for a repository") from err
            except (git.GitError, OSError, ValueError, configparser.Error) as err:
                raise _DamagedError(f"git cannot open it: {git_reason(err)}") from err
            return repo
        if self._ours():
            raise _DamagedError("its HEAD is missing")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.workdir, bare=True)
            repo.create_remote("origin", self.url)
        except (git.InvalidGitRepositoryError, git.GitCommandError, OSError) as err:
            raise SourceError(f"{shown(str(self.workdir))}: cannot use it as the git work directory") from err
        return repo

    def _ours(self) -> bool:
        """Whether the work directory holds a clone this reconciler made (it writes askpass.sh
        on every fetch), so that it may be emptied."""
        return (self.workdir / "askpass.sh").is_file() or (self.workdir / "refs" / "mico").is_dir()

    def _set_aside(self, reason: str) -> None:
        self._close()
        self._move_aside(reason)

    def _move_aside(self, reason: str) -> None:
        """Move the damaged clone to `<workdir>.broken` (replacing the one set aside before), for a
        post-mortem; where it cannot be moved (a mount point), empty it. The SSH known hosts stay:
        cloning again must not trust a new host key."""
        workdir = Path(os.path.abspath(self.workdir))
        ours = self._ours()
        known_hosts = contents(workdir / "known_hosts")
        if ours:  # the note marks what may be deleted the next time
            with contextlib.suppress(OSError):
                (workdir / DAMAGED_NOTE).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {reason}\n")
        try:
            if not workdir.name:
                raise OSError("the root directory cannot be moved")
            aside = self._aside(workdir)
            if aside.exists():
                shutil.rmtree(aside)
            workdir.rename(aside)
            where = f"moved it to {shown(str(aside))}"
        except OSError:
            if not ours:
                raise SourceError(
                    f"{shown(str(workdir))}: the git work directory is damaged ({reason}); it cannot be "
                    "moved aside and was not made by mico-reconciler: move it away or delete it"
                ) from None
            for entry in workdir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
            where = "emptied it (it cannot be moved)"
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            if known_hosts is not None:
                (workdir / "known_hosts").write_bytes(known_hosts)
                (workdir / "known_hosts").chmod(stat.S_IRUSR | stat.S_IWUSR)
        except OSError as err:
            raise SourceError(f"{shown(str(workdir))}: cannot use it as the git work directory") from err
        log.warning(
            "the git work directory %s is damaged (%s): %s and cloning again",
            shown(str(workdir)),
            shown(reason),
            where,
        )

    @staticmethod
    def _aside(workdir: Path) -> Path:
        """Where a damaged clone goes: `<workdir>.broken`, or one set aside before (which it
        replaces); never a directory that is not such a clone (a name with a suffix then)."""
        aside = workdir.with_name(f"{workdir.name}.broken")
        if not aside.exists() or (aside / DAMAGED_NOTE).is_file():
            return aside
        older = [p for p in aside.parent.glob(f"{glob.escape(aside.name)}-*") if (p / DAMAGED_NOTE).is_file()]
        return older[0] if older else aside.with_name(f"{aside.name}-{time.time_ns()}")

    def _environment(self) -> dict[str, str]:
        return self.access.environment(self.workdir, dict(os.environ))


def _is_commit(repo: git.Repo, sha: str) -> bool:
    try:
        return bool(repo.odb.info(bytes.fromhex(sha)).type == b"commit")
    except (ValueError, OSError, git.GitError):
        return False


def _parents(repo: git.Repo, commit: str) -> set[str]:
    """A commit's parents, read from the object (no process); none when it cannot be read."""
    try:
        header = repo.odb.stream(bytes.fromhex(commit)).read().split(b"\n\n", 1)[0]
    except (ValueError, OSError, git.GitError):
        return set()
    return {line[7:47].decode() for line in header.splitlines() if line.startswith(b"parent ")}


class _DamagedError(Exception):
    """The clone cannot be used: a git command that only reads or writes it failed."""


def _summary(stderr: str) -> str:
    """git's stderr on one line: its distinct lines (git repeats some per pack), the first few."""
    distinct = list(dict.fromkeys(line.strip() for line in stderr.splitlines() if line.strip()))
    text = " ".join(distinct[:_STDERR_LINES])
    if len(distinct) > _STDERR_LINES:
        text += f" (and {len(distinct) - _STDERR_LINES} more lines)"
    return shown(text[:_STDERR_CHARS])
