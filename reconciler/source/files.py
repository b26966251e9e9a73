"""Read a config path (a file, or a directory of mico.yaml / *.mico.yaml files).

The same selection rule serves a path on disk and a path inside a git revision, so
`validate` and `diff` always read the same files the daemon will.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import git

from reconciler.spec import select_config_files

MAX_FILE_BYTES = 8 * 1024 * 1024


class SourceError(Exception):
    """The config cannot be read (missing path, bad revision, not a repository)."""


def read_path(path: Path) -> dict[str, bytes]:
    """Files by display path (the path as given, joined with each file's relative path)."""
    if path.is_file():
        return {str(path): _read(path)}
    if not path.is_dir():
        raise SourceError(f"{path}: no such file or directory")
    relative = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    chosen = select_config_files(relative)
    if not chosen:
        raise SourceError(f"{path}: no mico.yaml or *.mico.yaml file in this directory")
    return {str(path / name): _read(path / name) for name in chosen}


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SourceError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()


def read_revision(repo_dir: Path, revision: str, path: str = ".") -> tuple[str, dict[str, bytes]]:
    """(full commit id, files by repository path) of the config at one revision."""
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as err:
        raise SourceError(f"{repo_dir}: not a git repository") from err
    try:
        commit = repo.commit(revision)
    except (git.BadName, ValueError, git.GitCommandError) as err:
        raise SourceError(f"{revision!r}: no such revision in {repo_dir}") from err
    prefix = posixpath.normpath(path.strip("/")) if path not in ("", ".", "/") else ""
    blobs = {
        str(item.path): item
        for item in commit.tree.traverse()
        if isinstance(item, git.Blob) and _inside(str(item.path), prefix)
    }
    if prefix in blobs:
        return commit.hexsha, {prefix: _blob_bytes(blobs[prefix])}
    if not blobs:
        raise SourceError(f"{path}: not found at {revision}")
    chosen = select_config_files(blobs)
    if not chosen:
        raise SourceError(f"{path}: no mico.yaml or *.mico.yaml file at {revision}")
    return commit.hexsha, {name: _blob_bytes(blobs[name]) for name in chosen}


def _inside(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _blob_bytes(blob: git.Blob) -> bytes:
    if blob.size > MAX_FILE_BYTES:
        raise SourceError(f"{blob.path}: larger than {MAX_FILE_BYTES} bytes")
    return bytes(blob.data_stream.read())
