"""The state store: only a writer migrates and marks runs interrupted; every other file is a
StoreError naming the problem."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.store import MIGRATIONS, ActionRecord, AppStatusRecord, Store, StoreError


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


# -- repeats: runs that found what the run before them found ----------------------------------

REVISION = "a" * 40
CONFIGURED = ActionRecord("Deployment", "ns", "d", "update", "configured", "changed in the config", False)
SKIPPED_DRIFT = ActionRecord("Deployment", "ns", "d", "update", "skipped", "drift; self-heal is off", True)


def _pending(available: int = 0) -> list[AppStatusRecord]:
    detail = {"totals": {"pods": 1, "requestedReplicas": 1, "availableReplicas": available}}
    return [AppStatusRecord("app", "v1", "Pending" if available == 0 else "Deployed", "Synced", detail)]


def _record(
    store: Store,
    trigger: str = "progress",
    *,
    outcome: str = "succeeded",
    revision: str = REVISION,
    error: str | None = None,
    actions: tuple[ActionRecord, ...] = (),
    statuses: list[AppStatusRecord] | None = None,
    topics: dict[str, tuple[str, str]] | None = None,
    build: bool = False,
    rollout: bool = False,
) -> int:
    """One run as the engine records it; returns the id of the row that records it."""
    run_id = store.start_run(trigger)
    if topics is not None:
        store.record_topics(run_id, topics)
    if build:
        job = store.start_build(run_id=run_id, service="s", version="1", fingerprint="f", job="j", attempt=1)
        store.finish_build(job, outcome="failed", reason="BackoffLimitExceeded")
    if rollout:
        store.record_rollouts(run_id, {"app@v1": revision})
    return store.finish_run(
        run_id,
        outcome=outcome,
        revision=revision,
        error=error,
        api_requests=3,
        actions=actions,
        statuses=_pending() if statuses is None else statuses,
    )


def test_no_op_re_checks_are_counted_on_the_run_they_repeat(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    applied = _record(store, "webhook:generic", actions=(CONFIGURED,))
    first_check = _record(store)  # nothing applied, but it differs from the run that applied
    assert first_check != applied
    assert [_record(store, trigger) for trigger in ("progress", "schedule", "progress")] == [first_check] * 3
    newest, oldest = store.runs()
    assert (oldest["id"], oldest["repeats"], oldest["last_seen"]) == (applied, 0, None)
    assert [a["outcome"] for a in oldest["actions"]] == ["configured"]
    assert (newest["id"], newest["trigger"], newest["repeats"]) == (first_check, "progress", 3)
    assert newest["finished"] <= newest["last_seen"]
    with sqlite3.connect(tmp_path / "state.db") as db:  # the repeats' own rows went with them
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
        assert db.execute("SELECT DISTINCT run_id FROM app_status ORDER BY run_id").fetchall() == [
            (applied,),
            (first_check,),
        ]
    db.close()
    (status,) = store.statuses()
    assert status["finished"] == newest["last_seen"], "a status is as fresh as its last check"


def test_a_run_that_did_or_found_something_new_keeps_its_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    recorded = [
        _record(store),
        _record(store, statuses=_pending(available=1)),  # the rollout progressed
        _record(store, revision="b" * 40, statuses=_pending(available=1)),  # a new commit
        _record(store, outcome="failed", error="Kubernetes API: 503", revision="b" * 40),
        _record(store, outcome="failed", error="Kubernetes API: 504", revision="b" * 40),
        _record(store, "startup", outcome="failed", error="Kubernetes API: 504", revision="b" * 40),
        _record(store, actions=(CONFIGURED,)),
        _record(store, actions=(CONFIGURED,)),  # reverting the same drift again did something
        _record(store, topics={"t": ("created", "")}),
        _record(store, topics={"t": ("created", "")}),
        _record(store, topics={"t": ("exists", "")}),
        _record(store, topics={"t": ("mismatched", "3 partitions, not 1")}),
        _record(store, build=True),
        _record(store, build=True),
        _record(store, rollout=True),
        _record(store, rollout=True),
    ]
    assert len(set(recorded)) == len(recorded), recorded
    assert [r["repeats"] for r in store.runs(limit=100)] == [0] * len(recorded)


def test_repeated_findings_that_change_nothing_are_counted_too(tmp_path: Path) -> None:
    """Drift left alone (--no-self-heal), an invalid commit, a broker down: the same finding
    again and again is one row with a count."""
    store = Store(tmp_path / "state.db")
    drift = [_record(store, "schedule", outcome="succeeded", actions=(SKIPPED_DRIFT,)) for _ in range(3)]
    down = [_record(store, outcome="failed", error="Kafka: unreachable", statuses=[]) for _ in range(3)]
    assert drift == [drift[0]] * 3
    assert down == [down[0]] * 3
    assert [r["repeats"] for r in store.runs()] == [2, 2]


def test_retention_counts_the_rows_kept_not_run_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", retention=3)
    applied = _record(store, actions=(CONFIGURED,))
    pending = _record(store)
    for _ in range(50):  # 50 re-checks of a long Pending rollout take no row of the retention
        _record(store)
    progressed = _record(store, statuses=_pending(available=1))
    assert [r["id"] for r in store.runs()] == [progressed, pending, applied]
    assert store.runs()[1]["repeats"] == 50
    latest = _record(store, revision="b" * 40)
    assert [r["id"] for r in store.runs()] == [latest, progressed, pending]


def test_a_repeat_is_never_counted_on_a_run_still_running(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    _record(store)
    running = store.start_run("schedule")  # e.g. a `sync` beside the daemon
    assert _record(store) > running
    assert [r["outcome"] for r in store.runs()] == ["succeeded", "running", "succeeded"]


def test_a_run_the_engine_knows_repeats_one_is_counted_without_writing_its_statuses(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    settled = _record(store)

    def repeat(of: int, revision: str = REVISION) -> int | None:
        run_id = store.start_run("schedule")
        return store.finish_run(run_id, outcome="succeeded", revision=revision, statuses=[], repeats=of)

    assert repeat(settled) == settled
    assert store.runs()[0]["repeats"] == 1
    assert [s["deployment"] for s in store.statuses()] == ["Pending"], "the statuses of the run it repeats"
    # the engine's belief is checked: another run since, or other findings, make a row of its own
    other = _record(store, revision="b" * 40)
    assert repeat(settled, revision="b" * 40) not in (settled, None, other)
    assert repeat(other, revision="c" * 40) not in (settled, other)


def test_a_version_4_database_is_migrated_by_a_writer_and_refused_by_readers_until_then(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:4]:
            db.executescript(script)
        db.execute(
            "INSERT INTO runs (trigger, revision, started, finished, outcome) "
            "VALUES ('schedule', NULL, 1, 2, 'succeeded')"
        )
        db.execute("PRAGMA user_version = 4")
    db.close()
    with pytest.raises(StoreError, match="schema version 4 is older"):
        Store(path, readonly=True)
    Store(path).close()
    (run,) = Store(path, readonly=True).runs()
    assert (run["trigger"], run["repeats"], run["last_seen"]) == ("schedule", 0, None)


@pytest.mark.parametrize(
    ("damage", "column"),
    [
        ("repeats = -1", "runs.repeats"),
        ("repeats = 'many'", "runs.repeats"),
        ("last_seen = 'x'", "runs.last_seen"),
    ],
)
def test_a_damaged_repeat_count_is_a_store_error(damage: str, column: str, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    _record(store)
    _record(store)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE runs SET {damage}")
    db.close()
    with pytest.raises(StoreError, match=column.replace(".", r"\.")):
        Store(path, readonly=True).runs()


def test_a_revision_s_commit_is_shown_with_its_runs_and_forgotten_with_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", retention=2)

    def run(revision: str, commit: tuple[str, str, float] | None) -> int | None:
        run_id = store.start_run("schedule")
        return store.finish_run(
            run_id, outcome="succeeded", revision=revision, statuses=_pending(available=1), commit=commit
        )

    first = run(REVISION, ("Scale the backend", "Ada", 1.0))
    assert run(REVISION, ("a second record of it changes nothing", "Eve", 2.0)) == first  # a repeat
    (status,) = store.statuses()
    assert (status["summary"], status["author"], status["run_id"], status["outcome"]) == (
        "Scale the backend",
        "Ada",
        first,
        "succeeded",
    )
    assert (store.runs()[0]["summary"], store.runs()[0]["author"]) == ("Scale the backend", "Ada")
    unknown = run("b" * 40, None)
    assert (store.runs()[0]["id"], store.runs()[0]["summary"]) == (unknown, None)
    for revision in ("c" * 40, "d" * 40):  # the retention drops the runs of REVISION, and its commit
        run(revision, ("later", "Ada", 3.0))
    remembered = store._db.execute("SELECT revision FROM commits ORDER BY revision").fetchall()
    assert [r[0] for r in remembered] == ["c" * 40, "d" * 40]
