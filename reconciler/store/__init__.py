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

A writer whose file stops taking writes (a filesystem gone read-only, a full disk, a lock held
by another process, an I/O error) goes on without them: a transaction that fails leaves nothing
behind (SQLite rolls it back), the history of the runs it would have recorded is lost (counted,
logged once per kind of failure, shown by `health`), and the facts later runs decide by (hashes
applied, rollouts, topics created, builds) are kept in memory, read as if written, and written
with the first transaction that succeeds (`_Pending`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from reconciler import metrics

log = logging.getLogger("mico_reconciler.store")
_T = TypeVar("_T")

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
    # what people recognise a revision by, once per revision (the status page, the API)
    """
    CREATE TABLE commits (
        revision TEXT PRIMARY KEY, summary TEXT NOT NULL, author TEXT NOT NULL, committed REAL NOT NULL
    );
    CREATE INDEX run_problems_run ON run_problems(run_id);
    CREATE INDEX run_topics_run ON run_topics(run_id);
    CREATE INDEX builds_run ON builds(run_id);
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


#: How long a write waits for another process's lock; a second while writes fail for it.
_BUSY_TIMEOUT_MS = 30_000
_BUSY_TIMEOUT_FAILING_MS = 1_000
#: Timestamps a run or build can carry (up to the year 9999): anything else is damage.
_MAX_TIME = 253_402_300_799
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """The state database cannot be used: missing, not a database, damaged, or another schema."""


# -- when the file stops taking writes ----------------------------------------------------------


class Unwritable(StrEnum):
    """Why a write failed when the disk, not the data, is the cause: the `kind` label of
    `mico_reconciler_history_write_errors_total`."""

    READ_ONLY = "read_only"
    DISK_FULL = "disk_full"
    LOCKED = "locked"
    IO_ERROR = "io_error"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Unwritable.READ_ONLY: "read-only",
    Unwritable.DISK_FULL: "disk full",
    Unwritable.LOCKED: "locked by another process",
    Unwritable.IO_ERROR: "I/O error",
}


def classify(code: str | None, *, read_only: bool = False, full: bool = False) -> Unwritable | None:
    """What kind of unwritable file SQLite's error `code` (e.g. `SQLITE_IOERR_WRITE`) means, or
    None for any other error (a damaged file, a constraint: the data's fault, raised as before).
    `read_only`, `full`: what the filesystem says, for an I/O error (a filesystem the kernel
    forced read-only after an error fails writes with EROFS, which SQLite reports as an I/O
    error; a full one can fail a `-shm` extension the same way)."""

    def of(*primaries: str) -> bool:
        return code is not None and any(code == p or code.startswith(p + "_") for p in primaries)

    if of("SQLITE_READONLY"):
        return Unwritable.READ_ONLY
    if of("SQLITE_FULL"):
        return Unwritable.DISK_FULL
    if of("SQLITE_BUSY", "SQLITE_LOCKED"):
        return Unwritable.LOCKED
    if of("SQLITE_IOERR", "SQLITE_CANTOPEN"):
        if read_only:
            return Unwritable.READ_ONLY
        return Unwritable.DISK_FULL if full else Unwritable.IO_ERROR
    return None


class WriteHealth:
    """Whether the state database takes writes, and since when it does not. Thread-safe, and
    never waits for the database: the HTTP I/O thread reads it for /healthz and /readyz.

    The file fails writes from the first failed write to the next write that lands. Each kind
    of failure is logged once (`failed` says when), and not again within `quiet` seconds of
    the last time it was, so a disk that flaps between full and not is not a line a minute;
    the end of a failure that was logged is logged once (`recovered`), with the figures since."""

    def __init__(self, quiet: float = 600.0) -> None:
        self._lock = threading.Lock()
        self._quiet = quiet
        self.failing: Unwritable | None = None  # the kind of the last failure, while failing
        self.since: float | None = None
        self.last_error: str | None = None
        self.errors: Counter[Unwritable] = Counter()  # since the start, by kind
        self.unrecorded_runs = 0  # since the start
        self.pending = 0  # facts kept in memory until they can be written
        self._told: dict[Unwritable, float] = {}  # when each kind was last logged
        self._untold = True  # no failure logged since the last recovery logged
        self._first: float | None = None  # figures since the last recovery logged
        self._errors = 0
        self._runs = 0

    def failed(self, kind: Unwritable, error: str, now: float) -> bool:
        """Counts a failed write; True when it is to be logged."""
        with self._lock:
            if self.failing is None:
                self.since = now
            if self._first is None:
                self._first = now
            self.failing, self.last_error = kind, error
            self.errors[kind] += 1
            self._errors += 1
            if now - self._told.get(kind, -math.inf) < self._quiet:
                return False
            self._told[kind] = now
            self._untold = False
            return True

    def unrecorded(self) -> None:
        with self._lock:
            self.unrecorded_runs += 1
            self._runs += 1

    def recovered(self, now: float) -> dict[str, Any] | None:
        """A write landed: the figures to log with the end of a failure that was logged, or None
        (nothing logged to end: they add up until then)."""
        with self._lock:
            self.failing = self.since = self.last_error = None
            if self._untold:
                return None
            ended = {
                "failed_writes": self._errors,
                "unrecorded_runs": self._runs,
                "seconds": round(now - (self._first or now), 1),
            }
            self._untold, self._first, self._errors, self._runs = True, None, 0, 0
            return ended

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "writable": self.failing is None,
                "failing": None if self.failing is None else self.failing.value,
                "reason": None if self.failing is None else self.failing.description,
                "since": self.since,
                "last_error": self.last_error,
                "write_errors": {k.value: n for k, n in sorted(self.errors.items())},
                "unrecorded_runs": self.unrecorded_runs,
                "pending_facts": self.pending,
            }


_BUILD_FIELDS = (
    "run_id", "service", "version", "fingerprint", "job", "attempt", "started", "finished", "outcome",
    "digest", "reason", "log_tail",
)  # fmt: skip
#: Finishes of runs whose start was written but whose end could not be, kept for later.
_MAX_PENDING_FINISHES = 1000


@dataclass
class _Pending:
    """What the runs decided while the file took no writes, to be written with the next
    transaction that lands (before its own writes, so the order is kept): only the facts later
    runs read back, never a run's history (which would grow without bound)."""

    applied: dict[tuple[str, str, str, str], str | None] = field(default_factory=dict)
    #: app -> (revision or None to forget, run id, sequence: the newer the higher)
    rollouts: dict[str, tuple[str | None, int, int]] = field(default_factory=dict)
    topics: dict[str, bool] = field(default_factory=dict)  # True: created by us, False: deleted
    #: builds whose start could not be written, by their (negative) provisional id
    builds: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: ends of written builds that could not be written
    build_ends: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: runs whose start was written: their outcome, to write (their details are lost)
    finishes: dict[int, tuple[float, str, str | None, str | None, int | None]] = field(default_factory=dict)
    sequence: int = 0

    def _all(self) -> tuple[dict[Any, Any], ...]:
        return (self.applied, self.rollouts, self.topics, self.builds, self.build_ends, self.finishes)

    def count(self) -> int:
        return sum(len(kept) for kept in self._all())

    def clear(self) -> None:
        for kept in self._all():
            kept.clear()

    def write(self, db: sqlite3.Connection, build_ids: dict[int, int]) -> None:
        """Everything kept, into the open transaction; `build_ids` learns the ids the builds got."""
        for run_id, (finished, outcome, revision, error, requests) in self.finishes.items():
            db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, revision = ?, error = ?, api_requests = ? "
                "WHERE id = ? AND outcome = 'running'",
                (finished, outcome, revision, error, requests, run_id),
            )
        _write_applied(db, self.applied)
        for app, (revision, run_id, _) in sorted(self.rollouts.items(), key=lambda item: item[1][2]):
            _write_rollouts(db, run_id, {app: revision})
        _write_topics(db, self.topics)
        for provisional, build in sorted(self.builds.items(), reverse=True):  # -1 first: oldest first
            cursor = db.execute(
                f"INSERT INTO builds ({', '.join(_BUILD_FIELDS)}) "  # noqa: S608 - constants
                f"VALUES ({', '.join('?' * len(_BUILD_FIELDS))})",
                [build[c] for c in _BUILD_FIELDS],
            )
            build_ids[provisional] = int(cursor.lastrowid or 0)
        for build_id, end in self.build_ends.items():
            _write_build_end(db, build_id, end)

    def rollouts_over(self, recorded: dict[str, str]) -> dict[str, str]:
        """`recorded` (most recent first) as it will be once these are written."""
        newest = sorted(self.rollouts.items(), key=lambda item: (-item[1][2], item[0]))
        merged = {app: revision for app, (revision, _, _) in newest if revision is not None}
        merged.update({app: revision for app, revision in recorded.items() if app not in self.rollouts})
        return merged


def _write_applied(db: sqlite3.Connection, applied: Mapping[tuple[str, str, str, str], str | None]) -> None:
    for key, digest in applied.items():
        if digest is None:
            db.execute(
                "DELETE FROM applied WHERE api_version = ? AND kind = ? AND namespace = ? AND name = ?", key
            )
        else:
            db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?)", (*key, digest))


def _write_rollouts(db: sqlite3.Connection, run_id: int, rollouts: Mapping[str, str | None]) -> None:
    """A run that could not be recorded (id < 1) orders its rollouts with the last run recorded."""
    if run_id < 1:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
        run_id = int(row[0]) if row else 0
    for app, revision in rollouts.items():
        if revision is None:
            db.execute("DELETE FROM rollouts WHERE app = ?", (app,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO rollouts VALUES (?, ?, ?, ?)", (app, revision, run_id, time.time())
            )


def _write_topics(db: sqlite3.Connection, ours: Mapping[str, bool]) -> None:
    """Topics that became ours (True: created by this reconciler) or stopped being (False)."""
    db.executemany(
        "INSERT OR IGNORE INTO topics VALUES (?, ?)",
        [(name, time.time()) for name, mine in ours.items() if mine],
    )
    db.executemany("DELETE FROM topics WHERE name = ?", [(name,) for name, mine in ours.items() if not mine])


def _write_build_end(db: sqlite3.Connection, build_id: int, end: Mapping[str, Any]) -> None:
    db.execute(
        "UPDATE builds SET finished = ?, outcome = ?, digest = ?, reason = ?, log_tail = ? WHERE id = ?",
        (end["finished"], end["outcome"], end["digest"], end["reason"], end["log_tail"], build_id),
    )


class Store:
    """`readonly`: for `history` and `status` (see the module docstring); otherwise the daemon's
    or a sync's store, which creates, migrates and writes the file."""

    def __init__(self, path: Path | str, *, retention: int = 500, readonly: bool = False) -> None:
        self.path = str(path)
        self.retention = retention
        self.readonly = readonly
        self.health = WriteHealth()
        self._lock = threading.Lock()  # the connection, and `_pending`
        self._pending = _Pending()
        self._build_ids: dict[int, int] = {}  # provisional build ids -> the ids they were written as
        self._provisional = 0  # the last provisional (negative) id given to a run or build
        #: `applied()` as of a data_version of the file (see there)
        self._applied: tuple[int, dict[tuple[str, str, str, str], str]] | None = None
        try:
            if readonly:
                self._db = self._open_readonly(Path(path))
            else:
                self._db = self._open_for_writing(Path(path))
        except sqlite3.Error as err:
            # a start needs the file to take writes (migrations, runs to mark interrupted): one
            # that cannot is refused, as a damaged one, naming why when the disk says it
            kind = None if readonly else self._unwritable(err)
            if kind in (Unwritable.READ_ONLY, Unwritable.DISK_FULL, Unwritable.LOCKED):
                raise StoreError(
                    f"{self.path}: the state database cannot be written ({kind.description}): {err}"
                ) from err
            raise StoreError(f"{self.path}: {_describe(err)}") from err

    def _open_for_writing(self, path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = "not a directory" if isinstance(err, FileExistsError) else err.strerror
            raise StoreError(f"{path}: cannot create its directory: {reason}") from err
        if _regular_file(path, missing_ok=True):
            _header(path)  # a foreign file fails here, before SQLite would take it over
        db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on the disk before it returns, so a transaction that landed survives
        # a crash of the machine, or a filesystem the kernel forces read-only before writeback
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            db.close()
            raise StoreError(f"{path}: not a mico-reconciler state database (it holds other tables)")
        self._db = db
        self._check_version(version, readonly=False)
        with self._lock:
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
        """One transaction, whole or not at all; the caller holds `_lock`. SQLite may have rolled
        it back itself (it does on a full disk or an I/O error), and a COMMIT can fail too: either
        way the connection is left outside any transaction, ready for the next one."""
        if self._db.in_transaction:  # a ROLLBACK that failed before: never build on its leftovers
            self._db.execute("ROLLBACK")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the error that got us here is the one to tell
                    self._db.execute("ROLLBACK")
            raise

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> tuple[bool, _T | None]:
        """`work` in one transaction, after everything kept pending; the caller holds `_lock`.
        Returns (True, its value), or (False, None) when the file takes no writes: then nothing
        of the transaction is left, the caller keeps what must not be lost in `_pending`, and
        the failure is counted (and logged once per kind). Any other error is raised: a reader's,
        or one that is the data's fault (a damaged file is a StoreError)."""
        changes = self._db.total_changes
        try:
            with self._transaction() as db:
                self._pending.write(db, self._build_ids)
                value = work(db)
        except sqlite3.Error as err:
            if self.readonly:  # `history` or `status` writing: a bug, not a disk to live with
                raise
            kind = self._unwritable(err)
            if kind is None:
                raise StoreError(f"{self.path}: {_describe(err)}") from err
            self._failed(kind, err)
            return False, None
        self._pending.clear()
        self.health.pending = 0
        if self.health.failing is not None and self._db.total_changes > changes:
            # only a transaction that wrote something says the file takes writes again (one
            # that wrote nothing commits on a full disk too)
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            metrics.HISTORY_WRITE_FAILING.set(0)
            ended = self.health.recovered(time.time())
            if ended is not None:
                log.info(
                    "the state database takes writes again: runs are recorded",
                    extra={"state_db": self.path, **ended},
                )
        return True, value

    def _unwritable(self, err: sqlite3.Error) -> Unwritable | None:
        code = getattr(err, "sqlite_errorname", None)
        if code is None or not code.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")):
            return classify(code)
        return classify(code, read_only=_read_only(Path(self.path)), full=_full(Path(self.path)))

    def _failed(self, kind: Unwritable, err: sqlite3.Error) -> None:
        self.health.pending = self._pending.count()
        metrics.HISTORY_WRITE_ERRORS.labels(kind=kind.value).inc()
        metrics.HISTORY_WRITE_FAILING.set(1)
        if kind == Unwritable.LOCKED:  # until a write lands, wait for the lock a second, not 30
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_FAILING_MS}")
        if self.health.failed(kind, str(err), time.time()):
            log.error(
                "the state database cannot be written (%s): runs are not recorded until it can; "
                "the reconcile loop goes on",
                kind.description,
                extra={"state_db": self.path, "kind": kind.value, "error": str(err)},
            )

    def _provisional_id(self) -> int:
        self._provisional -= 1
        return self._provisional

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
        """The run's id; negative when it cannot be recorded (the file takes no writes): such a
        run is not recorded, what it applies is still kept (see `finish_run`)."""

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO runs (trigger, revision, started, outcome) VALUES (?, ?, ?, 'running')",
                (trigger, revision, time.time()),
            )
            return int(cursor.lastrowid or 0)

        with self._lock:
            written, run_id = self._write(insert)
            return run_id if written and run_id else self._provisional_id()

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
        repeats: int | None = None,
        commit: tuple[str, str, float] | None = None,
    ) -> int | None:
        """Everything a run found, in one transaction; `applied` maps object keys to the hash now
        applied (None: deleted).

        A run that changed nothing and found exactly what the run before it found (same revision,
        outcome, error, problems, statuses, topics, and no action but skipped ones) is a repeat:
        it is counted on that run (`repeats`, `last_seen`) and its own row removed, so re-checks
        of a long Pending rollout, or of a broken commit, cannot push the runs that did something
        out of the retention. Returns the id of the row that records the run, or None when the
        run could not be recorded: its start or this transaction found the file taking no
        writes. Then `applied` is kept to be written later; so is the outcome of a run whose
        start was written (its actions, problems and statuses are lost, and its error says so).

        `commit` is the revision's (summary, author, committed), kept while a run of it is.

        `repeats` names the recorded run this one repeats as far as the engine knows (nothing
        can have changed since): when that row is still the latest, the run is counted on it
        without writing its statuses (which cost most of a row) to compare them."""
        now = time.time()
        applied = dict(applied or {})

        def finish(db: sqlite3.Connection) -> int | None:
            _write_applied(db, applied)
            if run_id < 1:
                return None
            if commit is not None and revision is not None:
                db.execute("INSERT OR IGNORE INTO commits VALUES (?, ?, ?, ?)", (revision, *commit))
            if repeats is not None and _still_latest(db, run_id, repeats, (revision, outcome, error)):
                return _count_repeat(db, run_id, repeats, now)
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
            recorded_on = _repeated(db, run_id)
            if recorded_on is None:
                recorded_on = run_id
            else:
                _count_repeat(db, run_id, recorded_on, now)
            # the newest `retention` rows stay: ids have gaps where repeats were counted
            db.execute(
                "DELETE FROM runs WHERE id <= (SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention,),
            )
            db.execute(
                "DELETE FROM commits WHERE revision NOT IN "
                "(SELECT revision FROM runs WHERE revision IS NOT NULL)"
            )
            return recorded_on

        with self._lock:
            written, recorded_on = self._write(finish)
            if self._applied is not None:  # written or kept to be written: what `applied` says
                known = self._applied[1]
                for key, digest in applied.items():
                    if digest is None:
                        known.pop(key, None)
                    else:
                        known[key] = digest
            if not written:
                self._pending.applied.update(applied)
                if run_id > 0 and len(self._pending.finishes) < _MAX_PENDING_FINISHES:
                    kind = self.health.failing or Unwritable.IO_ERROR
                    lost = (
                        f"its actions, problems and statuses could not be recorded "
                        f"(state database: {kind.description})"
                    )
                    self._pending.finishes[run_id] = (
                        now,
                        outcome,
                        revision,
                        f"{error}; {lost}" if error else lost,
                        api_requests,
                    )
                self.health.pending = self._pending.count()
            if recorded_on is None:
                self.health.unrecorded()
                metrics.HISTORY_UNRECORDED_RUNS.inc()
            return recorded_on

    def record_rollouts(self, run_id: int, rollouts: Mapping[str, str | None]) -> None:
        """Applications (`shortName@version`) and the revision they now run at (None: forget)."""
        rollouts = dict(rollouts)
        with self._lock:
            written, _ = self._write(lambda db: _write_rollouts(db, run_id, rollouts))
            if not written:
                pending = self._pending
                pending.sequence += 1
                for app, revision in rollouts.items():
                    pending.rollouts[app] = (revision, run_id, pending.sequence)
                self.health.pending = pending.count()

    def start_build(
        self, *, run_id: int, service: str, version: str, fingerprint: str, job: str, attempt: int
    ) -> int:
        """The build's id; negative when its start cannot be written yet (it is kept, read back
        by `build_history` once finished, and written with the next transaction that lands)."""
        build = {
            "run_id": run_id if run_id > 0 else None,
            "service": service,
            "version": version,
            "fingerprint": fingerprint,
            "job": job,
            "attempt": attempt,
            "started": time.time(),
            "finished": None,
            "outcome": "running",
            "digest": None,
            "reason": None,
            "log_tail": None,
        }

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                f"INSERT INTO builds ({', '.join(_BUILD_FIELDS)}) "  # noqa: S608 - constants
                f"VALUES ({', '.join('?' * len(_BUILD_FIELDS))})",
                [build[c] for c in _BUILD_FIELDS],
            )
            return int(cursor.lastrowid or 0)

        with self._lock:
            written, build_id = self._write(insert)
            if written and build_id:
                return build_id
            provisional = self._provisional_id()
            self._pending.builds[provisional] = build
            self.health.pending = self._pending.count()
            return provisional

    def finish_build(
        self,
        build_id: int,
        *,
        outcome: str,
        digest: str | None = None,
        reason: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        end = {"finished": time.time(), "outcome": outcome, "digest": digest, "reason": reason}
        end["log_tail"] = log_tail
        with self._lock:
            if build_id in self._pending.builds:  # its start is not written yet: it goes with it
                self._pending.builds[build_id].update(end)
                self._write(lambda db: None)
                return
            build_id = self._build_ids.pop(build_id, build_id)

            written, _ = self._write(lambda db: _write_build_end(db, build_id, end))
            if not written:
                self._pending.build_ends[build_id] = end
                self.health.pending = self._pending.count()

    def record_topics(
        self,
        run_id: int,
        states: Mapping[str, tuple[str, str]],
        *,
        created: Iterable[str] = (),
        deleted: Iterable[str] = (),
    ) -> None:
        """`states`: topic -> (state, detail); `created` topics become managed, `deleted` ones stop.
        When the file takes no writes, the topics created and deleted are kept for later; the
        states are the run's history, recorded with it or not at all."""
        ours = dict.fromkeys(created, True) | dict.fromkeys(deleted, False)

        def insert(db: sqlite3.Connection) -> None:
            if run_id > 0:
                db.executemany(
                    "INSERT INTO run_topics VALUES (?, ?, ?, ?)",
                    [(run_id, name, state, detail) for name, (state, detail) in sorted(states.items())],
                )
            _write_topics(db, ours)

        with self._lock:
            written, _ = self._write(insert)
            if not written:
                self._pending.topics.update(ours)
                self.health.pending = self._pending.count()

    # -- reading -----------------------------------------------------------------------------

    def managed_topics(self) -> set[str]:
        with self._reading() as db:
            rows = db.execute("SELECT name FROM topics").fetchall()
            pending = dict(self._pending.topics)
        recorded = {self._checked("topics", r, {"name": _TEXT})["name"] for r in rows}
        created = {name for name, ours in pending.items() if ours}
        return (recorded | created) - (pending.keys() - created)

    def topic_states(self) -> list[dict[str, Any]]:
        """Topics as the latest run that reached the broker saw them."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT name, state, detail FROM run_topics WHERE run_id = "
                "(SELECT MAX(run_id) FROM run_topics WHERE state != 'unknown') ORDER BY name"
            ).fetchall()
        return [self._checked("run_topics", r, _TOPIC_COLUMNS) for r in rows]

    def build_history(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Per (service, version), its finished builds, newest first (those not written yet too)."""
        with self._reading() as db:
            ends = dict(self._pending.build_ends)
            rows = db.execute(
                f"SELECT * FROM builds WHERE outcome != 'running' OR id IN ({', '.join('?' * len(ends))}) "  # noqa: S608 - placeholders
                "ORDER BY id DESC",
                list(ends),
            ).fetchall()
            kept = [  # not written yet: newer than any written build (ids -1, -2, ... in order)
                {"id": provisional, **build}
                for provisional, build in sorted(self._pending.builds.items())
                if build["outcome"] != "running"
            ]
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for build in kept + [self._checked("builds", row, _BUILD_RECORD_COLUMNS) for row in rows]:
            build.update(ends.get(build["id"], {}))
            found.setdefault((build["service"], build["version"]), []).append(build)
        return found

    def recent_builds(self, service: str, version: str, limit: int = 3) -> list[dict[str, Any]]:
        """The newest finished builds of a service version (for the status page, every few
        seconds: by index, not the whole table)."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM builds WHERE service = ? AND version = ? AND outcome != 'running' "
                "ORDER BY id DESC LIMIT ?",
                (service, version, limit),
            ).fetchall()
        return [self._checked("builds", row, _BUILD_RECORD_COLUMNS) for row in rows]

    def application_names(self) -> list[str]:
        """Every application some recorded run has a status of."""
        with self._reading() as db:
            rows = db.execute("SELECT DISTINCT app FROM app_status ORDER BY app").fetchall()
        return [self._checked("app_status", row, {"app": _TEXT})["app"] for row in rows]

    def applied(self) -> dict[tuple[str, str, str, str], str]:
        """The hash applied of each object; kept in memory until another connection (a `sync`
        beside the daemon) writes the file: every run reads it, and it holds every object."""
        with self._reading() as db:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if self._applied is None or self._applied[0] != version:
                rows = db.execute("SELECT api_version, kind, namespace, name, hash FROM applied").fetchall()
                checked = [self._checked("applied", r, dict.fromkeys(r.keys(), _TEXT)) for r in rows]
                found = {(r["api_version"], r["kind"], r["namespace"], r["name"]): r["hash"] for r in checked}
                for key, digest in self._pending.applied.items():
                    if digest is None:
                        found.pop(key, None)
                    else:
                        found[key] = digest
                self._applied = (version, found)
            return dict(self._applied[1])

    def rollouts(self) -> dict[str, str]:
        """Each application (`shortName@version`) and the revision it last rolled out at, the
        most recent rollout first."""
        with self._reading() as db:
            rows = db.execute("SELECT app, revision FROM rollouts ORDER BY run_id DESC, app").fetchall()
            checked = [self._checked("rollouts", r, {"app": _TEXT, "revision": _TEXT}) for r in rows]
            return self._pending.rollouts_over({r["app"]: r["revision"] for r in checked})

    def last_good_revision(self) -> str | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT revision FROM runs WHERE outcome = 'succeeded' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else self._checked("runs", row, {"revision": _optional(_TEXT)})["revision"]

    def runs(self, *, limit: int = 20, app: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT runs.*, c.summary, c.author FROM runs LEFT JOIN commits c ON c.revision = runs.revision"
        )
        params: list[Any] = []
        if app is not None:
            query += " WHERE id IN (SELECT run_id FROM app_status WHERE app = ?)"
            params.append(app)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._reading() as db:
            runs = [
                self._checked("runs", r, _RUN_COLUMNS) | self._checked("commits", r, _COMMIT_COLUMNS)
                for r in db.execute(query, params).fetchall()
            ]
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
            "SELECT s.*, r.revision, r.outcome, COALESCE(r.last_seen, r.finished) AS finished, "
            "c.summary, c.author "
            "FROM app_status s JOIN runs r ON r.id = s.run_id LEFT JOIN commits c ON c.revision = r.revision "
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
                | self._checked("commits", r, _COMMIT_COLUMNS)
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
_STATUS_RUN_COLUMNS = {
    "run_id": _INTEGER,
    "outcome": _TEXT,
    "revision": _optional(_TEXT),
    "finished": _optional(_TIME),
}
#: a revision's commit, joined (NULL when it was not recorded)
_COMMIT_COLUMNS = {"summary": _optional(_TEXT), "author": _optional(_TEXT)}


def _count_repeat(db: sqlite3.Connection, run_id: int, repeated: int, now: float) -> int:
    db.execute("UPDATE runs SET repeats = repeats + 1, last_seen = ? WHERE id = ?", (now, repeated))
    db.execute("DELETE FROM runs WHERE id = ?", (run_id,))  # its rows go with it
    return repeated


def _run_before(db: sqlite3.Connection, run_id: int) -> sqlite3.Row | None:
    """(id, revision, outcome, error) of the row before `run_id`."""
    row: sqlite3.Row | None = db.execute(
        "SELECT id, revision, outcome, error FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1", (run_id,)
    ).fetchone()
    return row


def _still_latest(db: sqlite3.Connection, run_id: int, repeats: int, found: tuple[Any, ...]) -> bool:
    """Whether `repeats` is the run right before `run_id` and found the same (revision, outcome,
    error), with no build or rollout recorded on `run_id` meanwhile (a repeat makes no action and
    reaches no broker)."""
    previous = _run_before(db, run_id)
    if previous is None or previous["id"] != repeats or tuple(previous)[1:] != found:
        return False
    acted = ("SELECT 1 FROM builds WHERE run_id = ?", "SELECT 1 FROM rollouts WHERE run_id = ?")
    return not any(db.execute(query, (run_id,)).fetchone() for query in acted)


def _repeated(db: sqlite3.Connection, run_id: int) -> int | None:
    """The run that `run_id` repeats (see `Store.finish_run`), if any. Values are only compared,
    so a damaged earlier row makes the run a row of its own, never an error."""
    run = db.execute("SELECT trigger, revision, outcome, error FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run is None or run["trigger"] in _NEVER_REPEATS:
        return None
    previous = _run_before(db, run_id)
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


def _read_only(path: Path) -> bool:
    """Whether the file's filesystem refuses writes: one the kernel forced read-only after an
    error still says `rw` (statvfs too), so ask it to change the file's times."""
    try:
        os.utime(path)
    except OSError as err:
        return err.errno == errno.EROFS
    return False


def _full(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


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
