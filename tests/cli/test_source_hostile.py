"""Hostile input to the source stage: odd revisions, shallow clones, symlinks, special files.

Every case runs the real CLI in a subprocess, so a traceback would show in stderr. A file
outside the config tree holds a marker that must never be echoed.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from reconciler.source.files import MAX_FILE_BYTES, SourceError
from reconciler.source.git import GitSource
from tests.helpers import commit, dump, example_data, git, new_repo, run

SECRET = "TOKEN-hunter2"
OUTSIDE = "symlink to a path outside the config tree is not followed"


def no_leak(result: subprocess.CompletedProcess[str], *hidden: str) -> None:
    """No traceback, and neither the secret nor a link target anywhere in the output."""
    assert "Traceback" not in result.stderr
    for text in (SECRET, *hidden):
        assert text not in result.stdout + result.stderr


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A repository with two commits of config/mico.yaml and a secret outside config/."""
    repo = new_repo(tmp_path / "repo")
    (repo / "secret.txt").write_text(f"password: {SECRET}\n")
    commit(repo, example_data(), "base")
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 5
    commit(repo, data, "scale")
    return repo


def diff(repo: Path, base: str, head: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # `--base=X`: a revision starting with "-" must reach the program, not argparse
    return run("diff", "--repo", str(repo), f"--base={base}", f"--head={head}", *extra)


# -- revisions ------------------------------------------------------------------------------------


def test_a_shallow_clone_says_how_to_fetch_the_base(history: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{history}", str(clone)], check=True)
    result = diff(clone, "HEAD~1", "HEAD", "--path", "config")
    assert result.returncode == 2
    no_leak(result)
    assert "'HEAD~1': no such revision in" in result.stderr
    assert "shallow clone" in result.stderr
    assert "git fetch --deepen=N" in result.stderr
    assert "git fetch --unshallow" in result.stderr
    assert "fetch-depth: 0" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_the_all_zero_id_is_explained(history: Path) -> None:
    result = diff(history, "0" * 40, "HEAD")
    assert result.returncode == 2
    no_leak(result)
    assert "the all-zero id names no commit" in result.stderr
    assert "compare with the default branch instead" in result.stderr


@pytest.mark.parametrize(
    "revision",
    [
        "@{-1}",
        "HEAD@{99}",
        "deadbeef" * 5,
        "no-such-branch",
        "--upload-pack=touch {pwned}",
        "-x",
        "HEAD\nInjected: line",
        "HEAD\x1b[31mred",
        "HEAD\u202egnp.exe",
        "",
        "https://user:hunter2@example.com/x",
    ],
)
def test_an_unknown_revision_is_one_safe_line(history: Path, revision: str) -> None:
    result = diff(history, revision.replace("{pwned}", str(history / "pwned")), "HEAD")
    assert result.returncode == 2
    no_leak(result, "hunter2", "\x1b", "\u202e")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mico-reconciler: '")
    assert "no such revision in" in lines[0] or "not a revision" in lines[0]
    assert not (history / "pwned").exists()


@pytest.mark.parametrize(("spec", "kind"), [("HEAD^{tree}", "tree"), ("HEAD:config/mico.yaml", "blob")])
def test_a_tree_or_blob_is_not_a_commit(history: Path, spec: str, kind: str) -> None:
    sha = git(history, "rev-parse", spec)
    result = diff(history, sha, "HEAD")
    assert result.returncode == 2
    no_leak(result)
    assert f"'{sha}': names a {kind}, not a commit" in result.stderr


def test_annotated_tags_and_reflog_forms_work(history: Path) -> None:
    git(history, "tag", "-a", "v1", "-m", "release", "HEAD~1")
    assert diff(history, "v1", "HEAD@{0}", "--path", "config").returncode == 1
    git(history, "checkout", "-q", "-b", "feature")
    git(history, "checkout", "-q", "main")
    assert diff(history, "@{-1}", "main", "--path", "config").returncode == 0
    by_message = diff(history, ":/base", "HEAD", "--path", "config")
    assert by_message.returncode == 1, by_message.stderr
    assert by_message.stdout.startswith("Comparing :/base@")


def test_a_repository_url_given_as_the_diff_repository_is_redacted() -> None:
    """The path normalisation of `--repo` turns `https://` into `https:/`; still no password."""
    result = run("diff", "--repo", f"https://u:{SECRET}@h/x", "--base", "HEAD~1", "--head", "HEAD")
    assert result.returncode == 2
    assert "not a git repository" in result.stderr
    no_leak(result)


@pytest.mark.parametrize(
    "path", [".", "./", "", "/", "config", "config/", "./config/", "/config", "config//"]
)
def test_spellings_of_a_path_read_the_same_config(history: Path, path: str) -> None:
    result = diff(history, "HEAD~1", "HEAD", "--path", path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == diff(history, "HEAD~1", "HEAD", "--path", "config").stdout


def test_a_file_path_with_doubled_slashes(history: Path) -> None:
    result = diff(history, "HEAD~1", "HEAD", "--path", "config//mico.yaml")
    assert result.returncode == 1, result.stderr


@pytest.mark.parametrize("path", ["..", "../x", "config/../../x"])
def test_a_path_that_leaves_the_repository_is_an_error(history: Path, path: str) -> None:
    result = diff(history, "HEAD~1", "HEAD", "--path", path)
    assert result.returncode == 2
    no_leak(result)
    assert "the path leaves the repository" in result.stderr


# -- repositories ---------------------------------------------------------------------------------


def test_odd_repositories(history: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(history), str(bare)], check=True)
    assert diff(bare, "HEAD~1", "HEAD", "--path", "config").returncode == 1
    git(history, "worktree", "add", "-q", str(tmp_path / "wt"))
    assert diff(tmp_path / "wt", "HEAD~1", "HEAD", "--path", "config").returncode == 1
    (tmp_path / "file").write_text("x")
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))
    for repo, message in [
        (tmp_path / "file", "not a git repository"),
        (tmp_path / "missing", "not a git repository"),
        (empty, "'HEAD~1': no such revision"),
        (tmp_path / "wt" / ".git", ""),
    ]:
        result = diff(repo, "HEAD~1", "HEAD")
        assert result.returncode == 2, repo
        no_leak(result)
        assert message in result.stderr


# -- symlinks in a revision -----------------------------------------------------------------------


def link(repo: Path, name: str, target: str) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../secret.txt", "../../secret.txt", "sub/../../secret.txt"]
)
def test_a_symlink_out_of_the_config_tree_is_refused_in_git(history: Path, target: str) -> None:
    link(history, "config/leak.mico.yaml", target)
    commit(history, example_data(), "leak")
    result = diff(history, "HEAD~1", "HEAD", "--path", "config")
    assert result.returncode == 2
    no_leak(result, target, "root:")
    assert f"config/leak.mico.yaml:1:1: (file): {OUTSIDE}" in result.stderr


def test_a_symlinked_config_path_is_resolved_within_the_repository(history: Path) -> None:
    link(history, "deploy", "config")
    link(history, "escape", "/etc")
    commit(history, example_data(), "links")
    result = diff(history, "HEAD", "HEAD", "--path", "deploy")
    assert (result.returncode, result.stderr) == (0, "")
    result = diff(history, "HEAD", "HEAD", "--path", "escape/passwd")
    assert result.returncode == 2
    no_leak(result, "root:")
    assert OUTSIDE in result.stderr


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ({"config/a.mico.yaml": "b.mico.yaml", "config/b.mico.yaml": "a.mico.yaml"}, "symlink loop"),
        ({"config/a.mico.yaml": "gone.yaml"}, "symlink to a file that does not exist"),
        ({"config/a.mico.yaml": "."}, "not a regular file (a directory)"),
    ],
)
def test_broken_symlinks_in_git_are_problems(history: Path, links: dict[str, str], message: str) -> None:
    for name, target in links.items():
        link(history, name, target)
    commit(history, example_data(), "links")
    result = diff(history, "HEAD~1", "HEAD", "--path", "config")
    assert result.returncode == 2
    no_leak(result)
    assert f"config/a.mico.yaml:1:1: (file): {message}" in result.stderr


def test_a_file_over_the_limit_in_git_is_a_problem(history: Path) -> None:
    commit(history, b"#" * (MAX_FILE_BYTES + 1), "huge", name="config/huge.mico.yaml")
    result = diff(history, "HEAD~1", "HEAD", "--path", "config")
    assert result.returncode == 2
    no_leak(result)
    assert f"huge.mico.yaml:1:1: (file): larger than the limit of {MAX_FILE_BYTES} bytes" in result.stderr


def test_a_symlink_inside_the_tree_reads_the_same_on_disk_and_in_git(history: Path) -> None:
    """services in a non-config file of config/, linked in: followed by validate, render and diff."""
    data = example_data()
    (history / "config" / "shared").mkdir()
    (history / "config" / "shared" / "services.yaml").write_bytes(dump({**data, "applications": []}))
    (history / "config" / "mico.yaml").write_bytes(
        dump({"apiVersion": data["apiVersion"], "applications": data["applications"]})
    )
    link(history, "config/services.mico.yaml", "shared/services.yaml")
    git(history, "add", "-A")
    git(history, "commit", "-q", "-m", "split")
    assert run("validate", str(history / "config")).returncode == 0
    assert run("render", str(history / "config")).stdout == run("render", "examples/mico.yaml").stdout
    result = diff(history, "HEAD~2", "HEAD", "--path", "config")
    assert result.returncode == 0, result.stdout + result.stderr


# -- on disk --------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """config/ with a valid mico.yaml, and a secret next to it."""
    (tmp_path / "secret.txt").write_text(f"password: {SECRET}\n")
    config = tmp_path / "config"
    config.mkdir()
    (config / "mico.yaml").write_bytes(dump(example_data()))
    return config


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize("target", ["../secret.txt", "/etc/passwd", "../missing"])
def test_a_symlink_out_of_the_tree_is_a_problem_on_disk(tree: Path, command: str, target: str) -> None:
    link(tree, "leak.mico.yaml", target)
    result = run(command, str(tree))
    assert result.returncode == 1
    no_leak(result, target, str(tree.parent / "secret.txt"), "root:")
    assert result.stderr == f"{tree / 'leak.mico.yaml'}:1:1: (file): {OUTSIDE}\n"


def test_the_json_output_names_the_problem_without_the_target(tree: Path) -> None:
    link(tree, "leak.mico.yaml", "../secret.txt")
    result = run("validate", str(tree), "--output", "json")
    assert result.returncode == 1
    no_leak(result, "secret.txt")
    assert OUTSIDE in result.stdout


def test_directory_symlinks_are_not_descended(tree: Path) -> None:
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "mico.yaml").write_text(f"{SECRET}: [\n")
    link(tree, "elsewhere", "../outside")
    link(tree, "loop", ".")
    result = run("validate", str(tree))
    assert result.returncode == 0, result.stderr
    no_leak(result)


def special(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to("missing.yaml")
    elif kind == "loop":
        path.symlink_to(path.name)
    else:
        with path.open("wb") as big:
            big.truncate(MAX_FILE_BYTES + 1)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "not a regular file (a FIFO)"),
        ("socket", "not a regular file (a socket)"),
        ("directory", "not a regular file (a directory)"),
        ("dangling", "symlink to a file that does not exist"),
        ("loop", "symlink loop"),
        ("big", f"larger than the limit of {MAX_FILE_BYTES} bytes"),
    ],
)
@pytest.mark.parametrize("name", ["mico.yaml", "x.mico.yaml"])
def test_special_files_named_like_config_are_problems(tree: Path, kind: str, message: str, name: str) -> None:
    (tree / "mico.yaml").unlink()
    (tree / "sub").mkdir()
    (tree / "sub" / "ok.mico.yaml").write_bytes(dump(example_data()))
    special(kind, tree / name)
    for command in ("validate", "render"):
        result = run(command, str(tree))
        assert result.returncode == 1, result.stderr
        no_leak(result)
        assert result.stderr == f"{tree / name}:1:1: (file): {message}\n"
    if kind != "directory":  # named on the command line: the same problem
        named = run("validate", str(tree / name))
        assert (named.returncode, named.stderr) == (1, f"{tree / name}:1:1: (file): {message}\n")


def test_a_device_named_on_the_command_line(tmp_path: Path) -> None:
    result = run("validate", "/dev/null")
    assert (result.returncode, result.stderr) == (
        1,
        "/dev/null:1:1: (file): not a regular file (a character device)\n",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files and directories whatever their mode")
def test_unreadable_files_and_directories_are_problems(tree: Path) -> None:
    (tree / "mico.yaml").chmod(0)
    (tree / "locked").mkdir(mode=0)
    result = run("validate", str(tree))
    assert result.returncode == 1
    no_leak(result)
    assert f"{tree / 'mico.yaml'}:1:1: (file): cannot be read: Permission denied" in result.stderr
    assert f"{tree / 'locked'}:1:1: (directory): cannot be read: Permission denied" in result.stderr


def test_a_file_name_that_is_not_utf8(tree: Path) -> None:
    with open(os.path.join(os.fsencode(tree), b"\xff.mico.yaml"), "wb") as odd:
        odd.write(b"services: [\n")
    result = run("validate", str(tree))
    assert result.returncode == 1
    no_leak(result)
    assert "\\udcff.mico.yaml:" in result.stderr or "\\xff.mico.yaml:" in result.stderr


# -- the daemon's source --------------------------------------------------------------------------


def test_the_daemon_refuses_what_diff_refuses(history: Path, tmp_path: Path) -> None:
    link(history, "config/leak.mico.yaml", "../secret.txt")
    commit(history, example_data(), "leak")
    source = GitSource(f"file://{history}", path="config", workdir=tmp_path / "cache")
    with pytest.raises(SourceError) as caught:
        source.fetch()
    assert OUTSIDE in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("ref", ["--upload-pack=touch {pwned}", "main\nx", ""])
def test_the_daemon_never_passes_a_ref_as_an_option(history: Path, tmp_path: Path, ref: str) -> None:
    source = GitSource(f"file://{history}", ref=ref.format(pwned=tmp_path / "pwned"), workdir=tmp_path / "c")
    with pytest.raises(SourceError, match="not a branch, tag or commit id"):
        source.fetch()
    assert not (tmp_path / "pwned").exists()
