"""Read the config at a git revision without a checkout, by the rule `files` reads a path on
disk: the same files are chosen, and a symlink is followed only inside the config tree."""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from reconciler.source.files import (
    MAX_FILE_BYTES,
    OUTSIDE,
    RefusedError,
    SourceError,
    problem,
    shown,
)
from reconciler.spec import Problem, select_config_files
from reconciler.spec.problems import quote

#: Symlinks resolved in a row before a git path counts as a loop (Linux's limit).
MAX_SYMLINK_HOPS = 40
_ZERO_ID = re.compile(r"^(0{40}|0{64})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# git tree entry modes
_REGULAR, _EXECUTABLE, _SYMLINK, _GITLINK, _TREE = "100644", "100755", "120000", "160000", "040000"


class DamagedRepositoryError(SourceError):
    """The repository itself cannot be read (not a repository, objects or refs that git cannot
    read): a fault of the clone, never of the config in it."""


def read_revision(
    repo_dir: Path,
    revision: str,
    path: str = ".",
    blobs: dict[str, bytes] | None = None,
    repo: git.Repo | None = None,
) -> tuple[str, dict[str, bytes]]:
    """(full commit id, files by repository path) of the config at one revision.

    `blobs` (the daemon's, between reads) maps blob ids to contents: a file whose blob was read
    before is not read again, and it is left holding exactly the blobs of this config. `repo`:
    the repository already open (its `git cat-file` processes kept running), else one is opened
    and closed.

    Every failure, including a config file that cannot be read as one, is a one-line
    SourceError: `diff` exits 2 for either, and the daemon applies nothing.
    """
    prefix = _repository_path(path)
    with contextlib.nullcontext(repo) if repo is not None else _open(repo_dir) as repo:
        commit = _commit(repo, repo_dir, revision)
        try:
            tree = _Tree.of(repo, commit, {} if blobs is None else blobs)
            files, problems = tree.config(prefix, shown(path), quote(revision))
            if blobs is not None:
                blobs.clear()
                blobs.update(tree.used)
        except (git.GitCommandError, ValueError, OSError) as err:
            where = shown(str(repo_dir))
            raise DamagedRepositoryError(
                f"{quote(revision)}: could not read {commit[:12]} in {where}: {git_reason(err)}"
            ) from err
    if problems:
        raise SourceError(
            f"the config at {quote(revision)} ({commit[:12]}) cannot be read: "
            + "; ".join(shown(str(p)) for p in problems)
        )
    return commit, files


def _repository_path(path: str) -> str:
    """--path as a normalised path inside the repository ("" for the root): `./`, `config//x`
    and `/config` are fine, a path that leaves the repository is not."""
    normal = posixpath.normpath(path.lstrip("/") or ".")
    if normal == ".." or normal.startswith("../"):
        raise SourceError(f"{shown(path)}: the path leaves the repository")
    return "" if normal == "." else normal


def _open(repo_dir: Path) -> git.Repo:
    try:
        return git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, NotADirectoryError) as err:
        raise DamagedRepositoryError(f"{shown(str(repo_dir))}: not a git repository") from err
    except OSError as err:
        raise DamagedRepositoryError(f"{shown(str(repo_dir))}: {err.strerror}") from err


def git_reason(err: Exception) -> str:
    """Why a git command failed, on one line (see `reason_line`)."""
    text = str(err)
    if isinstance(err, git.GitCommandError):  # gitpython shows it as "\n  stderr: '...'"
        text = str(err.stderr or "").strip().removeprefix("stderr: '").removesuffix("'")
    return reason_line(text) or type(err).__name__


def reason_line(stderr: str) -> str:
    """The line of git's stderr that says why: its last `fatal:` (the most specific), else its
    first `error:`, else its first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("fatal:")]
    error = [line for line in lines if line.startswith("error:")]
    reason = fatal[-1] if fatal else (error or lines or [""])[0]
    return shown(reason[:300])


def _commit(repo: git.Repo, repo_dir: Path, revision: str) -> str:
    """The commit a revision names, through git's own parser (reflogs, @{-1}, tags, ...)."""
    where = shown(str(repo_dir))
    if _ZERO_ID.match(revision):
        raise SourceError(
            f"{quote(revision)}: the all-zero id names no commit: GitHub sends it as `before` for a "
            "new branch; compare with the default branch instead"
        )
    if not revision or revision.startswith("-") or _CONTROL.search(revision):
        raise SourceError(f"{quote(revision)}: not a revision")
    # the object first, then its commit: a suffix appended to the revision would change the
    # meaning of forms such as `:/message`; a full id verifies even when no object has it
    found = _answer(repo.git.rev_parse, "--verify", "--quiet", "--end-of-options", revision)
    if found:
        commit = _answer(repo.git.rev_parse, "--verify", "--quiet", found + "^{commit}")
        if commit:
            return commit
        kind = _answer(repo.git.cat_file, "-t", found)
        if kind:
            raise SourceError(f"{quote(revision)}: names a {kind}, not a commit")
    message = f"{quote(revision)}: no such revision in {where}"
    if _shallow(repo):
        message += (
            ", a shallow clone whose history may end before it: fetch more with "
            "`git fetch --deepen=N` or `git fetch --unshallow` (in GitHub Actions: "
            "actions/checkout with `fetch-depth: 0`)"
        )
    raise SourceError(message) from None


def _answer(command: Callable[..., Any], *args: str) -> str:
    """A git command's output, or "" when git refuses."""
    try:
        return str(command(*args))
    except git.GitCommandError:
        return ""


def _shallow(repo: git.Repo) -> bool:
    try:
        return bool(repo.git.rev_parse("--is-shallow-repository") == "true")
    except git.GitCommandError:
        return False


@dataclass(frozen=True)
class _Entry:
    mode: str
    sha: str


@dataclass(frozen=True)
class _Tree:
    """Every entry of one commit's tree by path (directories too), read without a checkout."""

    repo: git.Repo
    entries: dict[str, _Entry]
    #: Blob contents read before, by id
    known: Mapping[str, bytes]
    #: The blobs this tree's config is made of, by id
    used: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, repo: git.Repo, commit: str, known: Mapping[str, bytes]) -> _Tree:
        listing = repo.git.ls_tree("-r", "-t", "-z", "--full-tree", commit, stdout_as_string=False)
        entries = {}
        for record in bytes(listing).split(b"\0"):
            if record:
                meta, _, name = record.partition(b"\t")
                mode, _, sha = meta.decode().split(" ")
                entries[name.decode(errors="backslashreplace")] = _Entry(mode, sha)
        return cls(repo, entries, known)

    def config(self, prefix: str, path: str, revision: str) -> tuple[dict[str, bytes], list[Problem]]:
        """The config files below `prefix` (a file, or a directory), and the problems."""
        try:
            root = self._resolve(prefix)
        except RefusedError as refused:
            raise SourceError(f"{path}: not followed at {revision}: {refused}") from refused
        if root and root not in self.entries:
            raise SourceError(f"{path}: not found at {revision}")
        if root and self.entries[root].mode != _TREE:
            try:
                return {prefix: self._read(root)}, []
            except RefusedError as refused:
                return {}, [problem(prefix, str(refused))]
        below = [name for name in self.entries if not root or name.startswith(root + "/")]
        chosen = select_config_files(below)
        if not chosen:
            raise SourceError(f"{path}: no mico.yaml or *.mico.yaml file at {revision}")
        files, problems = {}, []
        for name in chosen:
            try:
                files[name] = self._read_inside(name, root)
            except RefusedError as refused:
                problems.append(problem(name, str(refused)))
        return files, problems

    def _read_inside(self, name: str, root: str) -> bytes:
        if self.entries[name].mode != _SYMLINK:
            return self._read(name)
        target = self._resolve(name)
        if root and not (target == root or target.startswith(root + "/")):
            raise RefusedError(OUTSIDE)
        if target not in self.entries:
            raise RefusedError("symlink to a file that does not exist")
        return self._read(target)

    def _read(self, name: str) -> bytes:
        entry = self.entries[name]
        if entry.mode == _TREE:
            raise RefusedError("not a regular file (a directory)")
        if entry.mode == _GITLINK:
            raise RefusedError("not a regular file (a submodule)")
        if entry.mode not in (_REGULAR, _EXECUTABLE):
            raise RefusedError("not a regular file")
        data = self.known.get(entry.sha)
        if data is None:
            info = self.repo.odb.info(bytes.fromhex(entry.sha))
            if info.size > MAX_FILE_BYTES:
                raise RefusedError(f"larger than the limit of {MAX_FILE_BYTES} bytes")
            data = bytes(self.repo.odb.stream(bytes.fromhex(entry.sha)).read())
        self.used[entry.sha] = data
        return data

    def _resolve(self, name: str) -> str:
        """`name` with every symlink in it resolved inside the tree, as realpath does on disk.

        A link's data is its target; an absolute target, or one that climbs above the
        repository, names something outside it and is refused.
        """
        pending, resolved, hops = name.split("/"), "", 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise RefusedError(OUTSIDE)
                resolved = posixpath.dirname(resolved)
                continue
            candidate = posixpath.join(resolved, part)
            entry = self.entries.get(candidate)
            if entry is None or entry.mode != _SYMLINK:
                resolved = candidate
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise RefusedError("symlink loop")
            target = self.repo.odb.stream(bytes.fromhex(entry.sha)).read().decode(errors="backslashreplace")
            if target.startswith("/"):
                raise RefusedError(OUTSIDE)
            pending = target.split("/") + pending
        return resolved


def origin_url(repo_dir: Path) -> str | None:
    """The URL of the repository's `origin` remote (the one a daemon clones), if it has one."""
    with _open(repo_dir) as repo:
        try:
            return str(repo.remotes.origin.url)
        except (AttributeError, IndexError, ValueError, git.GitError):
            return None
