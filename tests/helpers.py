"""Shared test helpers: the example config as data, and loading configs from dicts."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

from reconciler.spec import Spec, SpecError, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mico.yaml"


def example_data() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def load_data(*documents: Any, name: str = "mico.yaml") -> Spec:
    return load({name: b"---\n".join(dump(d) for d in documents)})


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit(repo: Path, data: Any, message: str, name: str = "config/mico.yaml") -> str:
    """Writes `data` (bytes, or a document to dump) to `name` and commits everything."""
    target = repo / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(dump(data) if not isinstance(data, bytes) else data)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def new_repo(path: Path) -> Path:
    """An empty repository on branch main, with a committer configured."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "user.name", "test")
    return path


def problems_of(files: dict[str, bytes]) -> list[str]:
    try:
        load(files)
    except SpecError as err:
        return [str(p) for p in err.problems]
    return []
