"""History and status in SQLite: every run, its actions, problems and drift, per-app status.

WAL mode and one transaction per write keep the file intact through a restart or a `kill -9`
mid-run: a run is inserted as `running` when it starts and finished in one transaction; a run
still `running` when the store opens for writing again was interrupted and is marked so. Schema
changes are numbered migrations tracked in `PRAGMA user_version`. Secrets never reach this file:
it stores object references, reasons and validation problems, never manifests or environment
values.

`history` and `status` open the file read-only (`Store.reader`): they never migrate it, mark a
live daemon's run interrupted, or create it. Whatever is in the file is checked as it is read, so
a damaged or foreign file is a `StoreError` naming the problem, never a traceback.
"""

from __future__ import annotations

import json
import math
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trigger TEXT NOT NULL,
        revision TEXT,
        started REAL NOT NULL,
        finished REAL,
        outcome TEXT NOT NULL,
        error TEXT,
        api_requests INTEGER
    );
    CREATE TABLE run_actions (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        verb TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL, drift INTEGER NOT NULL
    );
    CREATE TABLE run_problems (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        file TEXT NOT NULL, line INTEGER NOT NULL, col INTEGER NOT NULL,
        field TEXT NOT NULL, message TEXT NOT NULL
    );
    CREATE TABLE app_status (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        app TEXT NOT NULL, version TEXT NOT NULL,
        deployment TEXT NOT NULL, sync TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE TABLE applied (
        api_version TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        hash TEXT NOT NULL, PRIMARY KEY (api_version, kind, namespace, name)
    );
    CREATE INDEX run_actions_run ON run_actions(run_id);
    CREATE INDEX app_status_app ON app_status(app, run_id);
    """,
    """
    CREATE TABLE builds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER,
        service TEXT NOT NULL, version TEXT NOT NULL, fingerprint TEXT NOT NULL, job TEXT NOT NULL,
        attempt INTEGER NOT NULL, started REAL NOT NULL, finished REAL,
        outcome TEXT NOT NULL, digest TEXT, reason TEXT, log_tail TEXT
    );
    CREATE INDEX builds_service ON builds(service, version, id);
    """,
    """
    CREATE TABLE topics (
        name TEXT PRIMARY KEY, created REAL NOT NULL
    );
    CREATE TABLE run_topics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE rollouts (
        app TEXT PRIMARY KEY, revision TEXT NOT NULL, run_id INTEGER NOT NULL, at REAL NOT NULL
    );
    """,
    # runs that repeated the one before them, counted on it instead of taking rows (`finish_run`)
    """
    ALTER TABLE runs ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN last_seen REAL;
    """,
)

#: What a run records, compared with the run before it to tell a repeat (see `finish_run`).
_RECORDED = {
    "run_actions": "kind, namespace, name, verb, outcome, reason, drift",
    "run_problems": "file, line, col, field, message",
    "app_status": "app, version, deployment, sync, detail",
    "run_topics": "name, state, detail",
}
#: A run of this trigger always keeps its own row: a (re)start is worth seeing.
_NEVER_REPEATS = ("startup",)


@dataclass(frozen=True)
class ActionRecord:
    kind: str
    namespace: str
    name: str
    verb: str
    outcome: str
    reason: str
    drift: bool


@dataclass(frozen=True)
class AppStatusRecord:
    app: str
    version: str
    deployment: str
    sync: str
    detail: Mapping[str, Any]


#: Timestamps a run or build can carry (up to the year 9999): anything else is damage.
_MAX_TIME = 253_402_300_799
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """The state database cannot be used: missing, not a database, damaged, or another schema."""


class Store:
    """`readonly`: for `history` and `status` (see the module docstring); otherwise the daemon's
    or a sync's store, which creates, migrates and writes the file."""

    def __init__(self, path: Path | str, *, retention: int = 500, readonly: bool = False) -> None:
        self.path = str(path)
        self.retention = retention
        self._lock = threading.Lock()
        try:
            if readonly:
                self._db = self._open_readonly(Path(path))
            else:
                self._db = self._open_for_writing(Path(path))
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: {_describe(err)}") from err

    def _open_for_writing(self, path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = "not a directory" if isinstance(err, FileExistsError) else err.strerror
            raise StoreError(f"{path}: cannot create its directory: {reason}") from err
        if _regular_file(path, missing_ok=True):
            _header(path)  # a foreign file fails here, before SQLite would take it over
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            db.close()
            raise StoreError(f"{path}: not a mico-reconciler state database (it holds other tables)")
        self._db = db
        self._check_version(version, readonly=False)
        self._migrate(version)
        with self._transaction() as tx:
            for table in ("runs", "builds"):
                tx.execute(
                    f"UPDATE {table} SET outcome = 'interrupted', finished = started "  # noqa: S608 - a constant
                    "WHERE outcome = 'running'"
                )
        return db

    def _open_readonly(self, path: Path) -> sqlite3.Connection:
        """Read-only, and creating no file: a WAL database nobody has open (no `-wal` file: a
        writer keeps one while it is open) is read as `immutable`, which needs no `-shm`; while
        a daemon has it open, this joins its WAL as a reader and sees its last commit."""
        _regular_file(path, missing_ok=False)
        header = _header(path)
        if not header:
            raise StoreError(f"{path}: not a state database (an empty file)")
        uri = path.resolve().as_uri() + "?mode=ro"
        if header[18] == 2 and not Path(f"{path}-wal").exists():
            uri += "&immutable=1"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        self._db = db
        self._check_version(db.execute("PRAGMA user_version").fetchone()[0], readonly=True)
        return db

    def _check_version(self, version: int, *, readonly: bool) -> None:
        known = len(MIGRATIONS)
        if version > known:
            self._db.close()
            raise StoreError(
                f"{self.path}: state database schema version {version} is newer than this "
                f"mico-reconciler knows ({known}); use a newer mico-reconciler"
            )
        if readonly and version == 0:
            self._db.close()
            raise StoreError(f"{self.path}: not a mico-reconciler state database")
        if readonly and version < known:
            self._db.close()
            raise StoreError(
                f"{self.path}: state database schema version {version} is older than this "
                f"mico-reconciler's ({known}); a `sync` or `run` migrates it"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: {_describe(err)}") from err

    def _migrate(self, version: int) -> None:
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def _checked(self, table: str, row: sqlite3.Row, columns: Mapping[str, _Column]) -> dict[str, Any]:
        """A row as a dict, every column of the form the code relies on; else a StoreError."""
        values = dict(row)
        for column, (valid, expected) in columns.items():
            if not valid(values[column]):
                raise StoreError(f"{self.path}: damaged state database: {table}.{column} is not {expected}")
        return values

    def close(self) -> None:
        self._db.close()

    # -- writing -----------------------------------------------------------------------------

    def start_run(self, trigger: str, revision: str | None = None) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (trigger, revision, started, outcome) VALUES (?, ?, ?, 'running')",
                (trigger, revision, time.time()),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: str,
        revision: str | None,
        error: str | None = None,
        api_requests: int | None = None,
        actions: Iterable[ActionRecord] = (),
        problems: Iterable[Mapping[str, Any]] = (),
        statuses: Iterable[AppStatusRecord] = (),
        applied: Mapping[tuple[str, str, str, str], str | None] | None = None,
    ) -> int:
        """Everything a run found, in one transaction; `applied` maps object keys to the hash now
        applied (None: deleted).

        A run that changed nothing and found exactly what the run before it found (same revision,
        outcome, error, problems, statuses, topics, and no action but skipped ones) is a repeat:
        it is counted on that run (`repeats`, `last_seen`) and its own row removed, so re-checks
        of a long Pending rollout, or of a broken commit, cannot push the runs that did something
        out of the retention. Returns the id of the row that records the run."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, revision = ?, error = ?, api_requests = ? "
                "WHERE id = ?",
                (now, outcome, revision, error, api_requests, run_id),
            )
            db.executemany(
                "INSERT INTO run_actions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, a.kind, a.namespace, a.name, a.verb, a.outcome, a.reason, int(a.drift))
                    for a in actions
                ],
            )
            db.executemany(
                "INSERT INTO run_problems VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, p["file"], p["line"], p["column"], p["field"], p["message"]) for p in problems],
            )
            db.executemany(
                "INSERT INTO app_status VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, s.app, s.version, s.deployment, s.sync, json.dumps(s.detail, sort_keys=True))
                    for s in statuses
                ],
            )
            for key, digest in (applied or {}).items():
                if digest is None:
                    db.execute(
                        "DELETE FROM applied "
                        "WHERE api_version = ? AND kind = ? AND namespace = ? AND name = ?",
                        key,
                    )
                else:
                    db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?)", (*key, digest))
            recorded_on = _repeated(db, run_id)
            if recorded_on is None:
                recorded_on = run_id
            else:
                db.execute(
                    "UPDATE runs SET repeats = repeats + 1, last_seen = ? WHERE id = ?",
                    (now, recorded_on),
                )
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))  # its rows go with it
            # the newest `retention` rows stay: ids have gaps where repeats were counted
            db.execute(
                "DELETE FROM runs WHERE id <= (SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention,),
            )
            return recorded_on

    def record_rollouts(self, run_id: int, rollouts: Mapping[str, str | None]) -> None:
        """Applications (`shortName@version`) and the revision they now run at (None: forget)."""
        with self._transaction() as db:
            for app, revision in rollouts.items():
                if revision is None:
                    db.execute("DELETE FROM rollouts WHERE app = ?", (app,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO rollouts VALUES (?, ?, ?, ?)",
                        (app, revision, run_id, time.time()),
                    )

    def start_build(
        self, *, run_id: int, service: str, version: str, fingerprint: str, job: str, attempt: int
    ) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO builds (run_id, service, version, fingerprint, job, attempt, started, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (run_id, service, version, fingerprint, job, attempt, time.time()),
            )
            return int(cursor.lastrowid or 0)

    def finish_build(
        self,
        build_id: int,
        *,
        outcome: str,
        digest: str | None = None,
        reason: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE builds SET finished = ?, outcome = ?, digest = ?, reason = ?, log_tail = ? "
                "WHERE id = ?",
                (time.time(), outcome, digest, reason, log_tail, build_id),
            )

    def record_topics(
        self,
        run_id: int,
        states: Mapping[str, tuple[str, str]],
        *,
        created: Iterable[str] = (),
        deleted: Iterable[str] = (),
    ) -> None:
        """`states`: topic -> (state, detail); `created` topics become managed, `deleted` ones stop."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO run_topics VALUES (?, ?, ?, ?)",
                [(run_id, name, state, detail) for name, (state, detail) in sorted(states.items())],
            )
            db.executemany(
                "INSERT OR IGNORE INTO topics VALUES (?, ?)", [(name, time.time()) for name in created]
            )
            db.executemany("DELETE FROM topics WHERE name = ?", [(name,) for name in deleted])

    # -- reading -----------------------------------------------------------------------------

    def managed_topics(self) -> set[str]:
        with self._reading() as db:
            rows = db.execute("SELECT name FROM topics").fetchall()
        return {self._checked("topics", r, {"name": _TEXT})["name"] for r in rows}

    def topic_states(self) -> list[dict[str, Any]]:
        """Topics as the latest run that reached the broker saw them."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT name, state, detail FROM run_topics WHERE run_id = "
                "(SELECT MAX(run_id) FROM run_topics WHERE state != 'unknown') ORDER BY name"
            ).fetchall()
        return [self._checked("run_topics", r, _TOPIC_COLUMNS) for r in rows]

    def build_history(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Per (service, version), its finished builds, newest first."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM builds WHERE outcome != 'running' ORDER BY id DESC").fetchall()
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            build = self._checked("builds", row, _BUILD_RECORD_COLUMNS)
            found.setdefault((build["service"], build["version"]), []).append(build)
        return found

    def applied(self) -> dict[tuple[str, str, str, str], str]:
        with self._reading() as db:
            rows = db.execute("SELECT api_version, kind, namespace, name, hash FROM applied").fetchall()
        checked = [self._checked("applied", r, dict.fromkeys(r.keys(), _TEXT)) for r in rows]
        return {(r["api_version"], r["kind"], r["namespace"], r["name"]): r["hash"] for r in checked}

    def rollouts(self) -> dict[str, str]:
        """Each application (`shortName@version`) and the revision it last rolled out at, the
        most recent rollout first."""
        with self._reading() as db:
            rows = db.execute("SELECT app, revision FROM rollouts ORDER BY run_id DESC, app").fetchall()
        checked = [self._checked("rollouts", r, {"app": _TEXT, "revision": _TEXT}) for r in rows]
        return {r["app"]: r["revision"] for r in checked}

    def last_good_revision(self) -> str | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT revision FROM runs WHERE outcome = 'succeeded' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else self._checked("runs", row, {"revision": _optional(_TEXT)})["revision"]

    def runs(self, *, limit: int = 20, app: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs"
        params: list[Any] = []
        if app is not None:
            query += " WHERE id IN (SELECT run_id FROM app_status WHERE app = ?)"
            params.append(app)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._reading() as db:
            runs = [self._checked("runs", r, _RUN_COLUMNS) for r in db.execute(query, params).fetchall()]
            for run in runs:
                run["actions"] = [
                    self._checked("run_actions", r, _ACTION_COLUMNS)
                    for r in db.execute(
                        "SELECT kind, namespace, name, verb, outcome, reason, drift "
                        "FROM run_actions WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
                for action in run["actions"]:
                    action["drift"] = bool(action["drift"])
                run["builds"] = [
                    self._checked("builds", r, _BUILD_COLUMNS)
                    for r in db.execute(
                        "SELECT service, version, job, attempt, outcome, digest, reason FROM builds "
                        "WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
                run["topics"] = [  # what the run did or found; topics merely present are left out
                    self._checked("run_topics", r, _TOPIC_COLUMNS)
                    for r in db.execute(
                        "SELECT name, state, detail FROM run_topics WHERE run_id = ? AND state != 'exists' "
                        "ORDER BY name",
                        (run["id"],),
                    )
                ]
                run["problems"] = [
                    self._checked("run_problems", r, _PROBLEM_COLUMNS)
                    for r in db.execute(
                        "SELECT file, line, col AS column, field, message FROM run_problems WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
        return runs

    def statuses(self, app: str | None = None) -> list[dict[str, Any]]:
        """The latest status of each application (or of one)."""
        query = (
            "SELECT s.*, r.revision, COALESCE(r.last_seen, r.finished) AS finished "
            "FROM app_status s JOIN runs r ON r.id = s.run_id "
            "WHERE s.run_id = (SELECT MAX(run_id) FROM app_status)"
        )
        params: list[Any] = []
        if app is not None:
            query += " AND s.app = ?"
            params.append(app)
        with self._reading() as db:
            rows = [
                self._checked("app_status", r, _STATUS_COLUMNS)
                | self._checked("runs", r, _STATUS_RUN_COLUMNS)
                for r in db.execute(query + " ORDER BY s.app, s.version", params)
            ]
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows


#: A column's check and what it expects, for the error message.
_Column = tuple[Callable[[Any], bool], str]


def _optional(column: _Column) -> _Column:
    valid, expected = column
    return (lambda value: value is None or valid(value)), f"{expected} or NULL"


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= _MAX_TIME


def _is_json_object(value: Any) -> bool:
    try:
        return isinstance(value, str) and isinstance(json.loads(value), dict)
    except ValueError:
        return False


_TEXT: _Column = (lambda value: isinstance(value, str), "text")
_INTEGER: _Column = (lambda value: isinstance(value, int), "an integer")
_TIME: _Column = (_is_time, "a timestamp")
_JSON_OBJECT: _Column = (_is_json_object, "a JSON object")
_RUN_COLUMNS = {
    "id": _INTEGER,
    "trigger": _TEXT,
    "revision": _optional(_TEXT),
    "started": _TIME,
    "finished": _optional(_TIME),
    "outcome": _TEXT,
    "error": _optional(_TEXT),
    "api_requests": _optional(_INTEGER),
    "repeats": (lambda value: isinstance(value, int) and value >= 0, "a count"),
    "last_seen": _optional(_TIME),
}
_ACTION_COLUMNS = dict.fromkeys(("kind", "namespace", "name", "verb", "outcome", "reason"), _TEXT) | {
    "drift": _INTEGER
}
_PROBLEM_COLUMNS = {"file": _TEXT, "line": _INTEGER, "column": _INTEGER, "field": _TEXT, "message": _TEXT}
_BUILD_COLUMNS = {
    "service": _TEXT,
    "version": _TEXT,
    "job": _TEXT,
    "attempt": _INTEGER,
    "outcome": _TEXT,
    "digest": _optional(_TEXT),
    "reason": _optional(_TEXT),
}
_BUILD_RECORD_COLUMNS = _BUILD_COLUMNS | {
    "id": _INTEGER,
    "run_id": _optional(_INTEGER),
    "fingerprint": _TEXT,
    "started": _TIME,
    "finished": _optional(_TIME),
    "log_tail": _optional(_TEXT),
}
_TOPIC_COLUMNS = {"name": _TEXT, "state": _TEXT, "detail": _TEXT}
_STATUS_COLUMNS = {
    **dict.fromkeys(("app", "version", "deployment", "sync"), _TEXT),
    "detail": _JSON_OBJECT,
}
_STATUS_RUN_COLUMNS = {"revision": _optional(_TEXT), "finished": _optional(_TIME)}


def _repeated(db: sqlite3.Connection, run_id: int) -> int | None:
    """The run that `run_id` repeats (see `Store.finish_run`), if any. Values are only compared,
    so a damaged earlier row makes the run a row of its own, never an error."""
    run = db.execute("SELECT trigger, revision, outcome, error FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run is None or run["trigger"] in _NEVER_REPEATS:
        return None
    previous = db.execute(
        "SELECT id, revision, outcome, error FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1", (run_id,)
    ).fetchone()
    if previous is None or tuple(previous)[1:] != tuple(run)[1:]:
        return None
    acted = (
        "SELECT 1 FROM run_actions WHERE run_id = ? AND outcome != 'skipped'",
        "SELECT 1 FROM builds WHERE run_id = ?",
        "SELECT 1 FROM rollouts WHERE run_id = ?",
        # topic states that say the run changed something at the broker, or tried to
        "SELECT 1 FROM run_topics WHERE run_id = ? "
        "AND state IN ('created', 'deleted', 'create failed', 'delete failed')",
    )
    if any(db.execute(query, (run_id,)).fetchone() for query in acted):
        return None
    for table, columns in _RECORDED.items():
        query = f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY {columns}"  # noqa: S608 - constants
        if [tuple(r) for r in db.execute(query, (run_id,))] != [
            tuple(r) for r in db.execute(query, (previous["id"],))
        ]:
            return None
    return int(previous["id"])


def _regular_file(path: Path, *, missing_ok: bool) -> bool:
    """Whether `path` exists; a directory, device or FIFO (which would block a reader) is refused
    before SQLite opens it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if missing_ok:
            return False
        raise StoreError(f"{path}: no state database (run `mico-reconciler sync` or `run` first)") from None
    except OSError as err:
        raise StoreError(f"{path}: cannot read the state database: {err.strerror}") from err
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path}: not a state database (not a regular file)")
    return True


def _header(path: Path) -> bytes:
    """The SQLite header of an existing file; an empty file is taken as a new database only by the
    writer."""
    try:
        with path.open("rb") as file:
            header = file.read(100)
    except OSError as err:
        raise StoreError(f"{path}: cannot read the state database: {err.strerror}") from err
    if header and not (header.startswith(_SQLITE_HEADER) and len(header) == 100):
        raise StoreError(f"{path}: not a state database (not an SQLite file)")
    return header


def _describe(err: sqlite3.Error) -> str:
    return {"file is not a database": "not a state database (not an SQLite file)"}.get(
        str(err), f"state database unusable: {err}"
    )
