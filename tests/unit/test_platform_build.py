"""The platform build script's contract with `platform.py up`: its standard output is the cache
directory and nothing else, whatever the build tools print (a cold Maven run writes colour codes
to standard out even in quiet mode; that once broke every first run on a fresh machine)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.helpers import ROOT

BUILD = ROOT / "hack" / "platform" / "build.sh"
#: what a cold Maven run printed on standard out, as a shell command
NOISE = r"printf '\033[0m\033[0mDownloaded from central: kafka.jar\n'"


def _tool(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _build(cache_root: Path, tools: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MICO_PLATFORM_CACHE": str(cache_root), "PATH": f"{tools}:{os.environ['PATH']}"}
    env.pop("KUBEBUILDER_ASSETS", None)
    return subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, env=env, check=False)


def test_standard_output_is_only_the_cache_directory(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    # a first run with a Go that fails at once lays out the cache directory, then stops
    _tool(tools, "go", f"{NOISE}\nexit 1\n")
    failed = _build(tmp_path / "cache", tools)
    assert failed.returncode != 0
    assert failed.stdout == ""  # the tool's output went to standard error
    (cache,) = (tmp_path / "cache").iterdir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
        _tool(cache / "bin", name, "exit 0\n")
    (cache / "kwok-stages").mkdir()
    # only Kafka's jars are left to fetch: the fake Maven writes colour codes to standard out
    _tool(tools, "mvn", f"{NOISE}\n")
    built = _build(tmp_path / "cache", tools)
    assert built.returncode == 0, built.stderr
    assert built.stdout == f"{cache}\n"
    assert "Downloaded from central" in built.stderr
    assert (cache / "kafka" / ".complete").exists()
