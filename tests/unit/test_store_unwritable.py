"""A state database that stops taking writes (read-only, full, locked): every write fails whole,
the daemon's runs go on unrecorded, what later runs decide by is kept until it can be written,
and each kind of failure is counted and logged once. The real filesystems are in
tests/faults/test_state.py; here SQLite is made to refuse writes (`query_only`,
`max_page_count`, another connection's lock)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from reconciler.store import ActionRecord, Store, StoreError, Unwritable, WriteHealth, classify

KEY = ("apps/v1", "Deployment", "ns", "d")
DIGEST = "sha256:" + "ab" * 32
ACTION = ActionRecord("Deployment", "ns", "d", "create", "created", "new in the config", False)


def errors(kind: str) -> float:
    return REGISTRY.get_sample_value("mico_reconciler_history_write_errors_total", {"kind": kind}) or 0.0


def unrecorded() -> float:
    return REGISTRY.get_sample_value("mico_reconciler_history_unrecorded_runs_total") or 0.0


def rows(path: Path, query: str) -> list[tuple[object, ...]]:
    """What another process reading the file sees."""
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute(query)]
    finally:
        db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


@pytest.mark.parametrize(
    ("code", "read_only", "full", "kind"),
    [
        ("SQLITE_READONLY", False, False, Unwritable.READ_ONLY),
        ("SQLITE_READONLY_DBMOVED", False, False, Unwritable.READ_ONLY),
        ("SQLITE_FULL", False, False, Unwritable.DISK_FULL),
        ("SQLITE_BUSY", False, False, Unwritable.LOCKED),
        ("SQLITE_BUSY_SNAPSHOT", False, False, Unwritable.LOCKED),
        ("SQLITE_LOCKED", False, False, Unwritable.LOCKED),
        # a filesystem the kernel forced read-only: EROFS, which SQLite reports as an I/O error
        ("SQLITE_IOERR_WRITE", True, False, Unwritable.READ_ONLY),
        ("SQLITE_IOERR_SHMSIZE", False, True, Unwritable.DISK_FULL),
        ("SQLITE_IOERR_FSYNC", False, False, Unwritable.IO_ERROR),
        ("SQLITE_CANTOPEN", False, False, Unwritable.IO_ERROR),
        # the data's fault, not the disk's: raised as before
        ("SQLITE_CORRUPT", True, True, None),
        ("SQLITE_NOTADB", False, False, None),
        ("SQLITE_CONSTRAINT_PRIMARYKEY", False, False, None),
        ("SQLITE_FULLER", False, False, None),  # a prefix is not a match
        (None, True, True, None),
    ],
)
def test_classify(code: str | None, read_only: bool, full: bool, kind: Unwritable | None) -> None:
    assert classify(code, read_only=read_only, full=full) == kind


def test_write_health_says_each_kind_once_and_the_end() -> None:
    health = WriteHealth(quiet=600)
    assert health.recovered(1.0) is None, "nothing failed, nothing to say"
    said = [health.failed(Unwritable.DISK_FULL, "full", t) for t in (10.0, 11.0, 12.0)]
    assert said == [True, False, False]
    assert health.failed(Unwritable.READ_ONLY, "ro", 13.0), "another kind is said once too"
    assert not health.failed(Unwritable.DISK_FULL, "full", 14.0)
    health.unrecorded()
    snapshot = health.snapshot()
    assert snapshot["writable"] is False
    assert (snapshot["failing"], snapshot["reason"], snapshot["since"]) == ("disk_full", "disk full", 10.0)
    assert snapshot["write_errors"] == {"disk_full": 4, "read_only": 1}
    assert health.recovered(20.0) == {"failed_writes": 5, "unrecorded_runs": 1, "seconds": 10.0}
    assert health.snapshot()["writable"] is True
    assert health.snapshot()["write_errors"] == {"disk_full": 4, "read_only": 1}, "totals stay"
    assert health.recovered(21.0) is None, "said once"


def test_a_flapping_disk_is_said_once_per_quiet_period() -> None:
    health = WriteHealth(quiet=600)
    said = []
    for minute in range(30):  # full, then a write lands, then full again: every minute
        said.append(health.failed(Unwritable.DISK_FULL, "full", minute * 60.0))
        said.append(health.recovered(minute * 60.0 + 1) is not None)
    assert said.count(True) == 3 * 2, "the failure and its end at 0, 10 and 20 minutes"
    assert health.failed(Unwritable.LOCKED, "locked", 30 * 60.0), "another kind is not held back"
    assert health.recovered(30 * 60.0 + 1) == {"failed_writes": 10, "unrecorded_runs": 0, "seconds": 541.0}


def test_a_read_only_database_loses_the_runs_history_but_not_what_later_runs_decide_by(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    before = store.start_run("startup")
    store.finish_run(before, outcome="succeeded", revision="a" * 40)
    errors_before, unrecorded_before = errors("read_only"), unrecorded()
    store._db.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on every write, like a read-only file
    with caplog.at_level(logging.INFO, logger="mico_reconciler.store"):
        for _ in range(3):  # three runs, as the engine records them
            run_id = store.start_run("schedule")
            assert run_id < 0, "not recorded"
            store.record_rollouts(run_id, {"app@v1": "b" * 40})
            store.record_topics(run_id, {"t": ("created", "")}, created=["t"])
            build = store.start_build(
                run_id=run_id, service="s", version="1", fingerprint="f", job="j", attempt=1
            )
            store.finish_build(build, outcome="succeeded", digest=DIGEST)
            assert (
                store.finish_run(run_id, outcome="succeeded", revision="b" * 40, applied={KEY: "h1"}) is None
            )
        failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in failures] == [
            "the state database cannot be written (read-only): runs are not recorded until it can; "
            "the reconcile loop goes on"
        ], "once per kind, not once per write"
        assert errors("read_only") - errors_before == 3 * 6
        assert unrecorded() - unrecorded_before == 3
        assert store.health.snapshot()["failing"] == "read_only"
        # read back as if written: a held application, a topic's owner, a build's image, drift
        assert store.rollouts() == {"app@v1": "b" * 40}
        assert store.managed_topics() == {"t"}
        assert [(b["id"] < 0, b["outcome"], b["digest"]) for b in store.build_history()[("s", "1")]] == [
            (True, "succeeded", DIGEST)
        ] * 3
        assert store.applied() == {KEY: "h1"}
        assert rows(path, "SELECT COUNT(*) FROM runs") == [(1,)], "nothing of them reached the file"

        store._db.execute("PRAGMA query_only = OFF")
        after = store.start_run("schedule")
        assert after > before
        (recovered,) = [r for r in caplog.records if r.getMessage().startswith("the state database takes")]
    assert (recovered.__dict__["unrecorded_runs"], recovered.__dict__["failed_writes"]) == (3, 18)
    assert store.health.snapshot()["writable"] is True
    assert store.health.snapshot()["pending_facts"] == 0
    assert rows(path, "SELECT app, revision FROM rollouts") == [("app@v1", "b" * 40)]
    assert rows(path, "SELECT name FROM topics") == [("t",)]
    assert rows(path, "SELECT run_id, outcome, digest FROM builds") == [(None, "succeeded", DIGEST)] * 3
    assert rows(path, "SELECT hash FROM applied") == [("h1",)]
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    store.finish_run(after, outcome="succeeded", revision="b" * 40)
    assert [r["id"] for r in store.runs()] == [after, before], "recorded again; the lost runs are gaps"


def test_a_full_disk_fails_a_run_s_record_whole_and_its_outcome_is_written_later(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    run_id = store.start_run("webhook:generic")
    store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLITE_FULL past one more page
    actions = [
        ActionRecord("Deployment", "ns", f"d{i}", "create", "created", "new", False) for i in range(2000)
    ]
    assert store.finish_run(run_id, outcome="succeeded", revision="c" * 40, actions=actions) is None
    assert store.health.snapshot()["failing"] == "disk_full"
    # whole or nothing: not one of the 2000 actions, the row still as its start left it
    assert rows(path, "SELECT outcome FROM runs") == [("running",)]
    assert rows(path, "SELECT COUNT(*) FROM run_actions") == [(0,)]
    assert not store._db.in_transaction

    store._db.execute("PRAGMA max_page_count = 1000000")  # space again
    later = store.start_run("schedule")
    store.finish_run(later, outcome="succeeded", revision="c" * 40, actions=actions[:1])
    lost, recorded = reversed(store.runs())
    assert (lost["id"], lost["outcome"], lost["revision"]) == (run_id, "succeeded", "c" * 40)
    assert (
        lost["error"]
        == "its actions, problems and statuses could not be recorded (state database: disk full)"
    )
    assert lost["actions"] == []
    assert (recorded["id"], len(recorded["actions"])) == (later, 1)
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_lock_held_elsewhere_is_waited_for_a_second_while_it_lasts(store: Store, tmp_path: Path) -> None:
    store._db.execute("PRAGMA busy_timeout = 50")  # the first wait, shortened for the test
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert store.start_run("schedule") < 0
        assert store.health.snapshot()["failing"] == "locked"
        assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] == 1000, "not 30 s per write"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.start_run("schedule") > 0
    assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_a_build_started_unrecorded_is_finished_under_the_id_it_was_written_as(store: Store) -> None:
    run_id = store.start_run("schedule")
    store._db.execute("PRAGMA query_only = ON")
    build = store.start_build(run_id=run_id, service="s", version="1", fingerprint="f", job="j", attempt=1)
    assert build < 0
    assert store.build_history() == {}, "running: not a finished build yet"
    store._db.execute("PRAGMA query_only = OFF")
    store.record_rollouts(run_id, {})  # any write that lands writes the build's start with it
    store.finish_build(build, outcome="failed", reason="BackoffLimitExceeded")
    ((recorded,),) = store.build_history().values()
    assert (recorded["id"] > 0, recorded["run_id"], recorded["outcome"]) == (True, run_id, "failed")


def test_damage_is_not_taken_for_a_full_disk(store: Store) -> None:
    """An error that is the data's fault still fails (the run fails with it, as before)."""
    store._db.execute(
        "CREATE TRIGGER no_runs BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'damaged'); END"
    )
    with pytest.raises(StoreError, match="damaged"):
        store.start_run("schedule")
    assert store.health.snapshot()["writable"] is True
