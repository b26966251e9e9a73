"""GitSource against real repositories on local paths: a damaged clone is set aside and cloned
again, a failing remote is not mistaken for a damaged clone, and a fetch past the timeout is
killed with everything it started. (The same faults under a running daemon:
tests/faults/test_git_faults.py.)"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.source import git as source_git
from reconciler.source.files import SourceError
from reconciler.source.git import DAMAGED_NOTE, GitSource, _summary
from reconciler.source.revision import DamagedRepositoryError, reason_line
from tests.helpers import alive, commit, git, new_repo


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A repository with more than the config: git keeps a fetch of 100 objects or more as a pack."""
    repo = new_repo(tmp_path / "origin")
    for n in range(120):
        (repo / "docs").mkdir(exist_ok=True)
        (repo / "docs" / f"{n}.md").write_text(f"page {n}\n")
    return repo


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "clone"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mico_reconciler.source"]


def objects(clone: Path) -> list[Path]:
    found = [p for p in (clone / "objects").rglob("*") if p.is_file() and "info" not in p.parts]
    for path in found:
        path.chmod(0o644)
    return found


def garble_objects(clone: Path) -> None:
    for path in objects(clone):
        path.write_bytes(b"garbage")


def truncate_packs(clone: Path) -> None:
    packs = [p for p in objects(clone) if p.name.startswith("pack-")]
    assert packs, "the clone keeps what it fetched as a pack"
    for pack in packs:
        pack.write_bytes(pack.read_bytes()[:20])


def delete_head(clone: Path) -> None:
    (clone / "HEAD").unlink()


def delete_objects(clone: Path) -> None:
    shutil.rmtree(clone / "objects")


def garble_config(clone: Path) -> None:
    (clone / "config").write_text("[[[ not a config\n")


def remove_origin(clone: Path) -> None:
    git(clone, "remote", "remove", "origin")


def garble_fetched_ref(clone: Path) -> None:
    (clone / "refs" / "mico" / "fetched").write_text("garbage\n")


def point_fetched_ref_nowhere(clone: Path) -> None:
    (clone / "refs" / "mico" / "fetched").write_text("1" * 40 + "\n")


def leave_locks(clone: Path) -> None:
    """What a git killed in the middle of a shallow fetch leaves."""
    (clone / "shallow.lock").touch()
    (clone / "refs" / "remotes" / "origin" / "main.lock").touch()


#: Each damage, and whether a new commit is needed for it to matter: a shallow lock is taken only
#: when there is something to fetch. (Damage in objects the fetch and the config do not need
#: goes unnoticed: git fetches them again.)
DAMAGES = [
    (garble_objects, False),
    (truncate_packs, False),
    (delete_head, False),
    (delete_objects, False),
    (garble_config, False),
    (remove_origin, False),
    (garble_fetched_ref, False),
    (point_fetched_ref_nowhere, False),
    (leave_locks, True),
]


@pytest.mark.parametrize(("damage", "new_commit"), DAMAGES, ids=[d.__name__ for d, _ in DAMAGES])
def test_a_damaged_clone_is_set_aside_and_cloned_again(
    origin: Path,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    new_commit: bool,
) -> None:
    revision = commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    damage(workdir)
    if new_commit:
        revision = commit(origin, b"two\n", "two")
    with caplog.at_level(logging.WARNING):
        snapshot = source.fetch()
    assert snapshot.revision == revision
    assert snapshot.files == {"config/mico.yaml": b"two\n" if new_commit else b"one\n"}
    (line,) = warnings(caplog)
    assert line.startswith(f"the git work directory {workdir} is damaged ("), line
    assert line.endswith(f"): moved it to {workdir}.broken and cloning again"), line
    assert (workdir.with_name("clone.broken") / DAMAGED_NOTE).is_file()
    third = commit(origin, b"three\n", "three")
    assert source.fetch().revision == third, "the new clone is used from now on"
    assert len(warnings(caplog)) == 1


def test_the_reason_is_specific(origin: Path, workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    point_fetched_ref_nowhere(workdir)
    with caplog.at_level(logging.WARNING):
        source.fetch()
    (line,) = warnings(caplog)
    assert f"(git fsck: error: refs/mico/fetched: invalid sha1 pointer {'1' * 40})" in line


def test_a_held_revision_is_read_again_from_a_fresh_clone(origin: Path, workdir: Path) -> None:
    first = commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    commit(origin, b"two\n", "two")
    source.fetch()
    garble_objects(workdir)
    assert source.at(first) == {"config/mico.yaml": b"one\n"}, "fetched again by its id"


def test_a_force_push_is_flagged_with_the_commit_it_replaced(
    origin: Path, workdir: Path, tmp_path: Path
) -> None:
    first = commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    assert source.fetch().previous is None
    second = commit(origin, b"two\n", "two")
    snapshot = source.fetch()
    assert (snapshot.revision, snapshot.rewritten, snapshot.previous) == (second, False, first)
    git(origin, "reset", "-q", "--hard", first)
    third = commit(origin, b"three\n", "three")
    snapshot = source.fetch()
    assert (snapshot.revision, snapshot.rewritten, snapshot.previous) == (third, True, second)
    assert source.at(second) == {"config/mico.yaml": b"two\n"}, "still in the clone that fetched it"
    gone = "f" * 40  # what a fresh clone finds of a commit the server no longer has
    with pytest.raises(SourceError) as caught:
        GitSource(str(origin), path="config", workdir=tmp_path / "fresh").at(gone)
    assert str(caught.value).startswith(f"'{gone}' does not exist in {origin} (removed by a force-push?): ")


def test_a_failing_remote_is_not_a_damaged_clone(
    origin: Path, workdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    commit(origin, b"one\n", "one")
    git(origin, "branch", "release")
    source = GitSource(str(origin), ref="release", path="config", workdir=workdir)
    source.fetch()
    git(origin, "branch", "-D", "release")
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as deleted:
        source.fetch()
    assert str(deleted.value).startswith(f"'release' does not exist in {origin} (deleted branch or tag?): ")
    gone = GitSource(str(tmp_path / "gone"), path="config", workdir=workdir)
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as unreachable:
        gone.fetch()
    assert str(unreachable.value).startswith(f"fetching 'main' from {tmp_path / 'gone'} failed: "), (
        unreachable.value
    )
    assert warnings(caplog) == []
    assert not workdir.with_name("clone.broken").exists()


def test_a_config_problem_is_not_a_damaged_clone(origin: Path, workdir: Path) -> None:
    commit(origin, b"one\n", "one", name="elsewhere/mico.yaml")
    with pytest.raises(SourceError, match="config: not found at"):
        GitSource(str(origin), path="config", workdir=workdir).fetch()
    assert not workdir.with_name("clone.broken").exists()


def test_the_clone_set_aside_before_is_replaced_and_known_hosts_are_kept(
    origin: Path, workdir: Path, tmp_path: Path
) -> None:
    commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    foreign = tmp_path / "clone.broken"
    foreign.mkdir()
    (foreign / "keep").write_text("not the reconciler's")
    for attempt in range(3):
        source.fetch()
        (workdir / "known_hosts").write_text(f"host key {attempt}\n")
        delete_head(workdir)
    source.fetch()
    assert (foreign / "keep").read_text() == "not the reconciler's", "never deleted"
    (ours,) = [p for p in tmp_path.iterdir() if p.name.startswith("clone.broken-")]
    assert (ours / DAMAGED_NOTE).read_text().endswith("its HEAD is missing\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone", "clone.broken", ours.name, "origin"]
    assert (workdir / "known_hosts").read_text() == "host key 2\n", "a new host key is not trusted"
    assert (workdir / "known_hosts").stat().st_mode & 0o777 == 0o600


def test_a_clone_that_cannot_be_moved_is_emptied(
    origin: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    garble_objects(workdir)

    def busy(self: Path, target: Path) -> None:
        raise OSError(16, "Device or resource busy")  # a mount point

    monkeypatch.setattr(Path, "rename", busy)
    inode = workdir.stat().st_ino
    with caplog.at_level(logging.WARNING):
        assert source.fetch().files == {"config/mico.yaml": b"one\n"}
    assert workdir.stat().st_ino == inode
    (line,) = warnings(caplog)
    assert line.endswith("): emptied it (it cannot be moved) and cloning again"), line


def test_a_damaged_directory_not_made_by_the_reconciler_is_never_emptied(
    origin: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(workdir.parent, "init", "-q", "--bare", str(workdir))  # someone's own repository
    garble_config(workdir)
    monkeypatch.setattr(Path, "rename", lambda self, target: (_ for _ in ()).throw(OSError(16, "busy")))
    with pytest.raises(SourceError) as caught:
        GitSource(str(origin), path="config", workdir=workdir).fetch()
    assert "was not made by mico-reconciler: move it away or delete it" in str(caught.value)
    assert (workdir / "HEAD").is_file()
    assert (workdir / "config").read_text() == "[[[ not a config\n"


def test_damage_a_fresh_clone_does_not_cure_is_one_error(
    origin: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    commit(origin, b"one\n", "one")

    def unreadable(*args: object) -> None:
        raise DamagedRepositoryError("could not read it")

    monkeypatch.setattr(source_git, "read_revision", unreadable)
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as caught:
        GitSource(str(origin), path="config", workdir=workdir).fetch()
    assert str(caught.value) == (
        f"{workdir}: the git work directory is damaged, also after cloning it again: could not read it"
    )
    assert len(warnings(caplog)) == 1, "cloned again once, not in a loop"


# -- the timeout ----------------------------------------------------------------------------------

FAKE_GIT = """#!/bin/sh
# git, except that a fetch starts a child, takes a lock and hangs, as one stuck on the network
for arg in "$@"; do
  case "$arg" in
    --git-dir=*) dir="${arg#--git-dir=}" ;;
    fetch)
      touch "$dir/shallow.lock"
      sleep 301 &
      echo "$! $$" > "$PIDS"
      sleep 302
      ;;
  esac
done
exec REAL_GIT "$@"
"""


def test_a_fetch_past_the_timeout_is_killed_with_everything_it_started(
    origin: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(origin, b"one\n", "one")
    real = shutil.which("git")
    assert real
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(FAKE_GIT.replace("REAL_GIT", real))
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PIDS", str(tmp_path / "pids"))
    source = GitSource(str(origin), path="config", workdir=workdir, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.fetch()
    took = time.monotonic() - started
    assert str(caught.value) == f"fetching 'main' from {origin} timed out after 0.5s (--git-timeout)"
    assert took < 5, f"returned {took:.1f}s after the fetch started"
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)], "git and its child are killed"
    assert not (workdir / "shallow.lock").exists(), "the lock the killed git held is removed"


# -- messages -------------------------------------------------------------------------------------


def test_git_stderr_on_one_line() -> None:
    repeated = "error: file x is far too short\n" * 5 + "error: b\nerror: c\nfatal: d\n"
    assert _summary(repeated) == "error: file x is far too short error: b error: c (and 1 more lines)"
    assert _summary("") == ""
    assert len(_summary("x" * 5000)) == 500
    assert (
        _summary("fatal: https://user:hunter2@example.com/x.git\n") == "fatal: https://***@example.com/x.git"
    )


def test_the_reason_line_is_the_most_specific() -> None:
    corrupt = "error: inflate: data stream error\nerror: unable to unpack\nfatal: loose object 1 is corrupt\n"
    assert reason_line(corrupt) == "fatal: loose object 1 is corrupt"
    assert reason_line("notice: HEAD\nerror: refs/mico/fetched: invalid\nerror: two\n") == (
        "error: refs/mico/fetched: invalid"
    )
    assert reason_line("only this\nand this") == "only this"
    assert reason_line("") == ""


def test_git_that_cannot_be_run_is_a_source_error(
    origin: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(origin, b"one\n", "one")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SourceError, match=f"^{workdir}: git could not be run: "):
        source.fetch()


def test_a_snapshot_names_its_commit_by_summary_and_author_not_e_mail(origin: Path, workdir: Path) -> None:
    git(origin, "config", "user.name", "Ada Lovelace")
    first = commit(origin, {"services": []}, "Scale the backend\n\nbecause of the launch")
    source = GitSource(str(origin), path="config", workdir=workdir)
    snapshot = source.fetch()
    assert snapshot.revision == first
    assert snapshot.commit is not None
    assert (snapshot.commit.summary, snapshot.commit.author) == ("Scale the backend", "Ada Lovelace")
    assert snapshot.commit.committed > 0
    assert "example.invalid" not in repr(snapshot.commit)
    second = commit(origin, {"services": [], "applications": []}, "Another")
    assert source.fetch().commit.summary == "Another"  # type: ignore[union-attr]
    assert second != first
