"""Shared test helpers: the example config as data, and loading configs from dicts."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from reconciler.spec import Spec, SpecError, load
from reconciler.store import ActionRecord, AppStatusRecord, Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mico.yaml"


def example_data() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def sharing_entry(data: dict[str, Any], service: str, **changes: Any) -> dict[str, Any]:
    """A deployment entry for `service` that shares the instance of its first entry in `data`:
    a copy of that entry without what each entry has of its own (replicas, wiring), changed by
    `changes`."""
    first = next(e for a in data["applications"] for e in a["services"] if e["shortName"] == service)
    own = ("replicas", "interfaceConnections", "topics")
    return {**{k: copy.deepcopy(v) for k, v in first.items() if k not in own}, **changes}


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def load_data(*documents: Any, name: str = "mico.yaml") -> Spec:
    return load({name: b"---\n".join(dump(d) for d in documents)})


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`mico-reconciler ARGS` in a child process, as a user runs it (a traceback shows on stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=timeout,
        env=env,
    )


def finished_run(path: Path) -> None:
    """A state database as the daemon writes it: one finished run with an action, a problem and
    an application status."""
    store = Store(path)
    run_id = store.start_run("sync", "0" * 40)
    store.finish_run(
        run_id,
        outcome="succeeded",
        revision="0" * 40,
        actions=[ActionRecord("Deployment", "ns", "d", "create", "created", "new", False)],
        problems=[{"file": "f", "line": 1, "column": 1, "field": "x", "message": "m"}],
        statuses=[AppStatusRecord("app", "1.0.0", "Deployed", "Synced", {"instances": {}})],
    )
    store.close()


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


def alive(pid: int) -> bool:
    """Running, not gone nor a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def node_tool(name: str) -> Path:
    """hack/NAME's npm packages (pinned by its lock file), installed once into
    ~/.cache/mico-tools/NAME-<lock hash>; the test skips, saying why, without Node.js."""
    import hashlib
    import shutil

    import pytest

    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("no node and npm on PATH (.ci/run installs Debian's)")
    source = ROOT / "hack" / name
    lock = hashlib.sha256((source / "package-lock.json").read_bytes()).hexdigest()[:12]
    home = Path.home() / ".cache" / "mico-tools" / f"{name}-{lock}"
    if not (home / "node_modules").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        for file in ("package.json", "package-lock.json"):
            shutil.copy(source / file, home / file)
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert installed.returncode == 0, installed.stderr[-2000:]
    return home
