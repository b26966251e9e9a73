"""`mico-reconciler import` against a source repository served by the platform's git daemon:
release tags listed over git://, the Dockerfile looked up at each, entries printed or added to
a mico.yaml that keeps its comments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from reconciler.spec import load
from tests.helpers import EXAMPLE, run


def source_repository(url: str, work: Path) -> None:
    """Tags: v0.9.0 without a Dockerfile, v1.0.0 exposing 8080, v1.1.0-rc.1 and v1.1.0 exposing
    8080 and 9090, and tags that are no version."""
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)

    def commit(files: dict[str, str], *tags: str) -> None:
        for name, text in files.items():
            (work / name).write_text(text)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "change"], check=True)
        for tag in tags:
            subprocess.run([*git, "tag", tag], check=True)

    commit({"README.md": "an order service\n"}, "v0.9.0")
    commit({"Dockerfile": "FROM scratch\nEXPOSE 8080\n"}, "v1.0.0", "latest")
    commit({"Dockerfile": "FROM scratch\nEXPOSE 8080 9090\n"}, "v1.1.0-rc.1", "v1.1.0", "release-2")
    subprocess.run([*git, "push", "-q", url, "main", "--tags"], check=True)


def test_import_prints_the_latest_release(git_repo: str, tmp_path: Path) -> None:
    source_repository(git_repo, tmp_path / "source")
    result = run("import", git_repo)
    assert result.returncode == 0, result.stderr
    (entry,) = yaml.safe_load(result.stdout)["services"]
    assert entry["version"] == "v1.1.0"
    assert entry["source"] == {"git": git_repo}
    assert [i["name"] for i in entry["interfaces"]] == ["tcp-8080", "tcp-9090"]


def test_import_all_tags_skips_a_tag_without_dockerfile_and_writes_keeping_comments(
    git_repo: str, tmp_path: Path
) -> None:
    source_repository(git_repo, tmp_path / "source")
    target = tmp_path / "mico.yaml"
    target.write_text(EXAMPLE.read_text())
    result = run("import", git_repo, "--all-tags", "--short-name", "order-service", "--write", str(target))
    assert result.returncode == 0, result.stderr
    assert "v0.9.0: no Dockerfile; skipped" in result.stderr
    assert result.stdout == f"{target}: added order-service v1.0.0, v1.1.0-rc.1, v1.1.0\n"
    text = target.read_text()
    assert text.startswith(EXAMPLE.read_text().split("\napplications:")[0])  # comments and all kept
    spec = load({"mico.yaml": text.encode()})
    assert [s.version for s in spec.services if s.short_name == "order-service"] == [
        "v1.0.0",
        "v1.1.0-rc.1",
        "v1.1.0",
    ]
    again = run(
        "import", git_repo, "--tag", "v1.0.*", "--short-name", "order-service", "--write", str(target)
    )
    assert again.returncode == 1
    assert "defines order-service v1.0.0 already; nothing written" in again.stderr
    assert target.read_text() == text


def test_import_of_a_repository_that_cannot_be_listed_exits_2(git_repo: str) -> None:
    result = run("import", git_repo.replace(".git", "-missing.git"))
    assert result.returncode == 2
    assert result.stderr.startswith("mico-reconciler: cannot list the tags of git://")
    assert "Traceback" not in result.stderr
