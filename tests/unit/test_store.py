"""The state store: only a writer migrates and marks runs interrupted; every other file is a
StoreError naming the problem."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.store import MIGRATIONS, Store, StoreError


def _with_running_run(path: Path) -> None:
    store = Store(path)
    store.start_run("schedule")
    store.close()


def test_a_reader_leaves_a_running_run_running_and_a_writer_marks_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _with_running_run(path)
    reader = Store(path, readonly=True)
    assert [r["outcome"] for r in reader.runs()] == ["running"]
    reader.close()
    Store(path).close()
    assert [r["outcome"] for r in Store(path, readonly=True).runs()] == ["interrupted"]


def test_a_reader_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _with_running_run(path)
    reader = Store(path, readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.start_run("sync")


@pytest.mark.parametrize("readonly", [True, False])
def test_a_newer_schema_is_refused(readonly: bool, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this mico-reconciler knows"):
        Store(path, readonly=readonly)


def test_a_writer_does_not_take_over_another_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x)")
    db.close()
    with pytest.raises(StoreError, match="other tables"):
        Store(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def test_a_writer_starts_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    Store(path).close()
    assert Store(path, readonly=True).runs() == []


def test_damaged_rows_fail_the_writer_s_reads_too(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO topics VALUES (x'00', 0)")
    db.close()
    with pytest.raises(StoreError, match=r"topics\.name is not text"):
        Store(path).managed_topics()
