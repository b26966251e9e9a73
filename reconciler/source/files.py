"""Read a config path (a file, or a directory of mico.yaml / *.mico.yaml files).

The same selection rule serves a path on disk and a path inside a git revision (see
source.revision), so
`validate` and `diff` always read the same files the daemon will. So does the rule for what
is not a plain file: a symlink is followed only while its target stays inside the config
tree (the path given, or --path in a revision), and a FIFO, socket, device, directory,
dangling or outside symlink named like a config file is a problem (never opened, its target
never echoed), never silently skipped: a skipped file would deploy a config without it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from reconciler.redact import redact
from reconciler.spec import Problem, SpecError, select_config_files
from reconciler.spec.problems import one_line

MAX_FILE_BYTES = 8 * 1024 * 1024

OUTSIDE = "symlink to a path outside the config tree is not followed"
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class SourceError(Exception):
    """The config cannot be read (missing path, bad revision, not a repository)."""


class RefusedError(Exception):
    """One file named like a config file that is not read; the message becomes a problem."""


def shown(text: str) -> str:
    """A path for a one-line message: control characters escaped, URL credentials hidden."""
    return one_line(redact(text))


def problem(name: str, message: str) -> Problem:
    return Problem(name, 1, 1, "(file)", message)


def read_path(path: Path) -> dict[str, bytes]:
    """Files by display path (the path as given, joined with each file's relative path).

    Raises SpecError when a file named like a config file cannot be read as one.
    """
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError) as err:
        raise SourceError(f"{shown(str(path))}: no such file or directory") from err
    except OSError as err:
        raise SourceError(f"{shown(str(path))}: {err.strerror}") from err
    if not _is_dir(path):  # a file named on the command line: its symlink is the user's
        try:
            return {str(path): _read_file(path)}
        except RefusedError as refused:
            raise SpecError([problem(str(path), str(refused))]) from refused
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    root = path.resolve()
    for name in _config_names(path, problems):
        try:
            files[str(path / name)] = _read_inside(path / name, root)
        except RefusedError as refused:
            problems.append(problem(str(path / name), str(refused)))
    if problems:
        raise SpecError(problems)
    if not files:
        raise SourceError(f"{shown(str(path))}: no mico.yaml or *.mico.yaml file in this directory")
    return files


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:  # a dangling symlink or a loop: _read_file says which
        return False


def _config_names(top: Path, problems: list[Problem]) -> list[str]:
    """Relative paths named like config files; symlinked directories are not descended into."""

    def unreadable(err: OSError) -> None:
        problems.append(Problem(str(err.filename), 1, 1, "(directory)", f"cannot be read: {err.strerror}"))

    names = []
    for directory, dirnames, filenames in os.walk(top, onerror=unreadable):
        relative = Path(directory).relative_to(top)
        names += [(relative / name).as_posix() for name in dirnames + filenames]
    return select_config_files(names)


def _read_inside(path: Path, root: Path) -> bytes:
    """A file in the config tree; a symlink only when its target is inside `root` (resolved)."""
    if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
        raise RefusedError(OUTSIDE)
    return _read_file(path)


def _read_file(path: Path) -> bytes:
    """A regular file's bytes; anything else is refused before it is opened (a FIFO would block)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise RefusedError(f"not a regular file ({_KINDS.get(stat.S_IFMT(info.st_mode), 'special')})")
        if info.st_size > MAX_FILE_BYTES:
            raise RefusedError(f"larger than the limit of {MAX_FILE_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # replaced since the stat
                raise RefusedError("not a regular file")
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        if err.errno == errno.ENOENT and path.is_symlink():
            raise RefusedError("symlink to a file that does not exist") from err
        if err.errno == errno.ELOOP:
            raise RefusedError("symlink loop") from err
        raise RefusedError(f"cannot be read: {err.strerror}") from err
    if len(data) > MAX_FILE_BYTES:
        raise RefusedError(f"larger than the limit of {MAX_FILE_BYTES} bytes")
    return data
