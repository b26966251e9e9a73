"""Fetching the config repository from the platform's git daemon and from a file URL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.source.files import SourceError
from reconciler.source.git import GitSource

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def commit(work: Path, text: str, *, amend: bool = False) -> str:
    (work / "config").mkdir(exist_ok=True)
    (work / "config" / "mico.yaml").write_text(text)
    subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
    subprocess.run(
        [*GIT, "-C", str(work), "commit", "-q", "-m", text, *(["--amend"] if amend else [])], check=True
    )
    return subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


def push(work: Path, url: str, *refs: str) -> None:
    subprocess.run(["git", "-C", str(work), "push", "-q", "-f", url, *refs], check=True)


def test_follows_a_branch_and_reads_only_the_config_path(git_repo: str, work: Path, tmp_path: Path) -> None:
    first = commit(work, "one\n")
    (work / "README.md").write_text("not config\n")
    push(work, git_repo, "main")
    source = GitSource(git_repo, path="config", workdir=tmp_path / "cache")
    snapshot = source.fetch()
    assert (snapshot.revision, snapshot.files, snapshot.rewritten) == (
        first,
        {"config/mico.yaml": b"one\n"},
        False,
    )
    second = commit(work, "two\n")
    push(work, git_repo, "main")
    assert source.fetch().revision == second
    assert source.fetch().rewritten is False


def test_a_force_push_is_followed_and_flagged(git_repo: str, work: Path, tmp_path: Path) -> None:
    commit(work, "one\n")
    push(work, git_repo, "main")
    source = GitSource(git_repo, workdir=tmp_path / "cache")
    source.fetch()
    rewritten = commit(work, "rewritten\n", amend=True)
    push(work, git_repo, "main")
    snapshot = source.fetch()
    assert (snapshot.revision, snapshot.rewritten) == (rewritten, True)
    restarted = GitSource(git_repo, workdir=tmp_path / "cache")  # the previous commit survives a restart
    assert restarted.fetch().rewritten is False


def test_a_vanished_branch_is_a_clear_error(git_repo: str, work: Path, tmp_path: Path) -> None:
    commit(work, "one\n")
    push(work, git_repo, "main", "main:release")
    source = GitSource(git_repo, ref="release", workdir=tmp_path / "cache")
    source.fetch()
    subprocess.run(["git", "-C", str(work), "push", "-q", git_repo, ":release"], check=True)
    with pytest.raises(SourceError, match="'release' does not exist in git://"):
        source.fetch()


def test_tags_pinned_commits_and_file_urls(work: Path, tmp_path: Path) -> None:
    pinned = commit(work, "one\n")
    subprocess.run(["git", "-C", str(work), "tag", "v1"], check=True)
    commit(work, "two\n")
    url = f"file://{work}"
    assert GitSource(url, ref="v1", workdir=tmp_path / "a").fetch().revision == pinned
    assert GitSource(url, ref=pinned, workdir=tmp_path / "b").fetch().files == {"config/mico.yaml": b"one\n"}
    assert GitSource(url, ref="main", workdir=tmp_path / "c").fetch().files == {"config/mico.yaml": b"two\n"}


def test_credentials_never_appear_in_errors(tmp_path: Path) -> None:
    source = GitSource("https://user:hunter2@127.0.0.1:9/none.git", workdir=tmp_path / "cache", timeout=10)
    with pytest.raises(SourceError) as caught:
        source.fetch()
    assert "hunter2" not in str(caught.value)
    assert "https://***@127.0.0.1:9/none.git" in str(caught.value)
