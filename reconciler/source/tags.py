"""A source repository's tags, and whether a file exists at each: what `mico-reconciler import`
reads over the network. The tags are listed without fetching anything; then only the chosen
tags' commits are fetched, shallow, into a scratch repository that is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable

from reconciler.redact import redact
from reconciler.source.files import SourceError
from reconciler.source.revision import reason_line

#: A remote that answers nothing for this long is given up on.
TIMEOUT_SECONDS = 120
#: Characters of a Dockerfile read for its EXPOSE lines.
MAX_DOCKERFILE = 1 << 20


def _git(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """No shell; URLs follow `--`; tags are MICO versions (`release_tags`), paths the contract's."""
    executable = shutil.which("git")
    if executable is None:
        raise SourceError("git is not installed (import runs it to list and fetch tags)")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}  # never prompt
    try:
        return subprocess.run(  # noqa: S603 - see above
            [executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"git {args[0]}: no answer in {TIMEOUT_SECONDS}s") from err


def remote_tags(url: str) -> list[str]:
    listed = _git("ls-remote", "--tags", "--refs", "--", url)
    if listed.returncode != 0:
        raise SourceError(f"cannot list the tags of {redact(url)}: {reason_line(listed.stderr)}")
    return [line.split("refs/tags/", 1)[1] for line in listed.stdout.splitlines() if "\trefs/tags/" in line]


def files_at_tags(url: str, tags: Iterable[str], path: str) -> dict[str, str | None]:
    """For each tag, the text of the file at `path` in its tree (None: no such file)."""
    tags = list(tags)
    if not tags:
        return {}
    with tempfile.TemporaryDirectory(prefix="mico-import-") as scratch:
        _git("init", "-q", "--bare", scratch)
        refspecs = [f"+refs/tags/{tag}:refs/tags/{tag}" for tag in tags]
        fetched = _git("fetch", "-q", "--depth=1", "--no-tags", "--", url, *refspecs, cwd=scratch)
        if fetched.returncode != 0:
            raise SourceError(f"cannot fetch the tags of {redact(url)}: {reason_line(fetched.stderr)}")
        found: dict[str, str | None] = {}
        for tag in tags:
            blob = f"refs/tags/{tag}^{{commit}}:{path}"
            kind = _git("cat-file", "-t", blob, cwd=scratch)
            shown = _git("cat-file", "blob", blob, cwd=scratch) if kind.stdout.strip() == "blob" else None
            found[tag] = (
                shown.stdout[:MAX_DOCKERFILE] if shown is not None and shown.returncode == 0 else None
            )
        return found
