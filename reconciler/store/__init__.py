"""History and status in SQLite: every run, its actions, problems and drift, per-app status.

WAL mode and one transaction per write keep the file intact through a restart or a `kill -9`
mid-run: a run is inserted as `running` when it starts and finished in one transaction; a run
still `running` when the store opens again was interrupted and is marked so. Schema changes are
numbered migrations tracked in `PRAGMA user_version`. Secrets never reach this file: it stores
object references, reasons and validation problems, never manifests or environment values.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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
)


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


class Store:
    def __init__(self, path: Path | str, *, retention: int = 500) -> None:
        self.path = str(path)
        self.retention = retention
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET outcome = 'interrupted', finished = started WHERE outcome = 'running'"
            )
            db.execute(
                "UPDATE builds SET outcome = 'interrupted', finished = started WHERE outcome = 'running'"
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

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

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
    ) -> None:
        """Everything a run found, in one transaction; `applied` maps object keys to the hash now
        applied (None: deleted)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, revision = ?, error = ?, api_requests = ? "
                "WHERE id = ?",
                (time.time(), outcome, revision, error, api_requests, run_id),
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
            db.execute("DELETE FROM runs WHERE id <= (SELECT MAX(id) FROM runs) - ?", (self.retention,))

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
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT name FROM topics")}

    def topic_states(self) -> list[dict[str, Any]]:
        """Topics as the latest run that reached the broker saw them."""
        with self._lock:
            return [
                dict(r)
                for r in self._db.execute(
                    "SELECT name, state, detail FROM run_topics WHERE run_id = "
                    "(SELECT MAX(run_id) FROM run_topics WHERE state != 'unknown') ORDER BY name"
                )
            ]

    def build_history(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Per (service, version), its finished builds, newest first."""
        with self._lock:
            rows = [
                dict(r)
                for r in self._db.execute("SELECT * FROM builds WHERE outcome != 'running' ORDER BY id DESC")
            ]
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault((row["service"], row["version"]), []).append(row)
        return found

    def applied(self) -> dict[tuple[str, str, str, str], str]:
        with self._lock:
            rows = self._db.execute("SELECT api_version, kind, namespace, name, hash FROM applied").fetchall()
        return {(r[0], r[1], r[2], r[3]): r[4] for r in rows}

    def last_good_revision(self) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT revision FROM runs WHERE outcome = 'succeeded' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else str(row[0])

    def runs(self, *, limit: int = 20, app: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs"
        params: list[Any] = []
        if app is not None:
            query += " WHERE id IN (SELECT run_id FROM app_status WHERE app = ?)"
            params.append(app)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            runs = [dict(r) for r in self._db.execute(query, params).fetchall()]
            for run in runs:
                run["actions"] = [
                    dict(r)
                    for r in self._db.execute(
                        "SELECT kind, namespace, name, verb, outcome, reason, drift "
                        "FROM run_actions WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
                for action in run["actions"]:
                    action["drift"] = bool(action["drift"])
                run["builds"] = [
                    dict(r)
                    for r in self._db.execute(
                        "SELECT service, version, job, attempt, outcome, digest, reason FROM builds "
                        "WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
                run["problems"] = [
                    dict(r)
                    for r in self._db.execute(
                        "SELECT file, line, col AS column, field, message FROM run_problems WHERE run_id = ?",
                        (run["id"],),
                    )
                ]
        return runs

    def statuses(self, app: str | None = None) -> list[dict[str, Any]]:
        """The latest status of each application (or of one)."""
        query = (
            "SELECT s.*, r.revision, r.finished FROM app_status s JOIN runs r ON r.id = s.run_id "
            "WHERE s.run_id = (SELECT MAX(run_id) FROM app_status)"
        )
        params: list[Any] = []
        if app is not None:
            query += " AND s.app = ?"
            params.append(app)
        with self._lock:
            rows = [dict(r) for r in self._db.execute(query + " ORDER BY s.app, s.version", params)]
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows
