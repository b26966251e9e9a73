"""Prometheus metrics of the reconciler (names follow Prometheus conventions: base units,
`_total` counters, `_info` for the applied revision). Label values come from closed enums."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from reconciler.plan.health import DeploymentStatus

RECONCILE_DURATION = Histogram(
    "mico_reconciler_reconcile_duration_seconds",
    "Duration of one reconcile run.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
STAGE_DURATION = Histogram(
    "mico_reconciler_stage_duration_seconds",
    "Time a run spent in each stage of the pipeline (fetch, load, render, observe, plan, apply, "
    "assess, builds, topics, record).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300),
)
RUNS = Counter("mico_reconciler_runs_total", "Reconcile runs by outcome.", ["outcome", "trigger"])
OBJECTS_APPLIED = Counter(
    "mico_reconciler_objects_applied_total", "Objects created or changed.", ["kind", "outcome"]
)
OBJECTS_PRUNED = Counter(
    "mico_reconciler_objects_pruned_total", "Objects deleted because the config dropped them.", ["kind"]
)
DRIFT = Counter(
    "mico_reconciler_drift_detected_total",
    "Objects found changed or deleted outside the reconciler.",
    ["kind"],
)
GIT_FETCH_DURATION = Histogram(
    "mico_reconciler_git_fetch_duration_seconds", "Duration of fetching the config repo."
)
GIT_FETCH_ERRORS = Counter(
    "mico_reconciler_git_fetch_errors_total", "Failed fetches of the config repository."
)
BUILDS = Counter("mico_reconciler_builds_total", "Finished image builds by outcome.", ["outcome"])
BUILD_DURATION = Histogram(
    "mico_reconciler_build_duration_seconds",
    "Duration of image builds.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800),
)
TOPIC_OPERATIONS = Counter(
    "mico_reconciler_topic_operations_total", "Kafka topic operations by outcome.", ["operation", "outcome"]
)
ORPHANED_TOPICS = Gauge(
    "mico_reconciler_orphaned_topics",
    "Topics this reconciler created that the config no longer names (kept, not deleted).",
)
KAFKA_ERRORS = Counter(
    "mico_reconciler_kafka_errors_total", "Runs whose Kafka step could not reach the broker."
)
WATCH_FAILING = Gauge(
    "mico_reconciler_watch_failing",
    "1 while the watch of a kind fails (runs then fail rather than use stale objects), else 0.",
    ["resource"],
)
HISTORY_WRITE_ERRORS = Counter(
    "mico_reconciler_history_write_errors_total",
    "Writes to the state database that failed because it takes no writes (read-only, disk full, "
    "locked, I/O error); the reconcile loop goes on without them.",
    ["kind"],
)
HISTORY_WRITE_FAILING = Gauge(
    "mico_reconciler_history_write_failing",
    "1 while the last write to the state database failed (runs are not recorded), else 0.",
)
HISTORY_UNRECORDED_RUNS = Counter(
    "mico_reconciler_history_unrecorded_runs_total",
    "Runs whose history could not be written to the state database.",
)
SPEC_PROBLEMS = Gauge(
    "mico_reconciler_spec_problems", "Validation problems of the config at the fetched revision."
)
LAST_SUCCESS = Gauge(
    "mico_reconciler_last_successful_sync_timestamp_seconds",
    "Unix time of the last run that converged the cluster.",
)
APPLIED_REVISION = Info(
    "mico_reconciler_applied_revision", "The config revision last applied to the cluster."
)
APPLICATION_STATUS = Gauge(
    "mico_reconciler_application_status",
    "1 for the current deployment status of each application, 0 for the others.",
    ["application", "version", "status"],
)
APPLICATION_SYNCED = Gauge(
    "mico_reconciler_application_synced",
    "1 when the application is Synced, else 0.",
    ["application", "version"],
)


def set_application_status(app: str, version: str, status: DeploymentStatus, synced: bool) -> None:
    for value in DeploymentStatus:
        APPLICATION_STATUS.labels(application=app, version=version, status=value.value).set(
            int(value == status)
        )
    APPLICATION_SYNCED.labels(application=app, version=version).set(int(synced))
