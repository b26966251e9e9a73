"""Runs Kaniko build Jobs and follows them with a watch until each succeeds or fails.

Jobs are the builder's, not the plan's: a build is started once per attempt and never
updated. A Job of the same name left by an interrupted run is adopted when it builds the same
source, replaced otherwise. On success the digest comes from the pod's termination message
(Kaniko's --digest-file) and is validated before it can reach an image field; on failure the
Job's reason and the last lines of the pod's log (or its termination message) are kept.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
import urllib3
from kubernetes import client

from reconciler import metrics
from reconciler.cluster import resources
from reconciler.plan import TRACKING_ANNOTATION, Manifest
from reconciler.plan.builds import DIGEST, BuildDecision
from reconciler.render.builds import SOURCE_ANNOTATION, build_job
from reconciler.render.labels import MANAGED_BY, MANAGED_BY_LABEL
from reconciler.render.settings import Settings
from reconciler.spec.model import Service
from reconciler.store import Store

log = logging.getLogger("mico_reconciler.builder")
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},app.kubernetes.io/component=build"
LOG_LINES = 20
#: Builds under way by Job name: (decision, build record id, monotonic start, Job uid).
Running = dict[str, tuple[BuildDecision, int, float, str]]


class BuildsInterrupted(Exception):  # noqa: N818 - reads as what happened
    """The daemon is stopping while it follows builds; their Jobs run on, to be adopted."""


@dataclass(frozen=True)
class BuildResult:
    decision: BuildDecision
    succeeded: bool
    digest: str | None = None
    reason: str | None = None
    log_tail: str | None = None


class Builder:
    def __init__(
        self, api: client.ApiClient, store: Store, settings: Settings, tracking: str, *, concurrency: int = 2
    ) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self.tracking = tracking
        self.concurrency = concurrency
        self._stopping = threading.Event()
        #: The build watch being read, which `interrupt` ends from another thread.
        self._watch: urllib3.BaseHTTPResponse | None = None
        self._watch_lock = threading.Lock()

    def interrupt(self) -> None:
        """Stop following builds at once, for good (SIGTERM): a build outlives a termination
        grace period, and its Job, left running, is adopted by the next start."""
        self._stopping.set()
        with self._watch_lock:
            if self._watch is not None:
                with contextlib.suppress(OSError, RuntimeError, ValueError):  # ended or released
                    self._watch.shutdown()

    def build(
        self,
        run_id: int,
        decisions: Iterable[BuildDecision],
        services: Mapping[tuple[str, str], Service],
        gates: Mapping[tuple[str, str], Sequence[str]],
    ) -> list[BuildResult]:
        """Start (at most `concurrency` at a time) and follow every build; blocks until all end.
        `gates`: the applications whose rollout waits for each build (annotated on its Job)."""
        queue = list(decisions)
        namespace = self.settings.build_namespace
        listed = resources.call(
            self.api, "GET", resources.JOB.path(namespace), query=[("labelSelector", SELECTOR)]
        )
        existing = {j["metadata"]["name"]: j for j in listed.get("items", [])}
        version = str(listed["metadata"]["resourceVersion"])
        running: Running = {}
        results: list[BuildResult] = []
        while queue or running:
            if self._stopping.is_set():
                self._interrupted(running)
            while queue and len(running) < self.concurrency:
                decision = queue.pop(0)
                job = existing.get(decision.job)
                build_id = self.store.start_build(
                    run_id=run_id,
                    service=decision.service,
                    version=decision.version,
                    fingerprint=decision.fingerprint,
                    job=decision.job,
                    attempt=decision.attempt,
                )
                adopted = job is not None and self._adoptable(job, decision)
                if adopted and job is not None:
                    uid = job["metadata"]["uid"]
                else:
                    uid = self._start(decision, job, services[decision.key], gates.get(decision.key, ()))
                log.info(
                    "build %s",
                    "adopted" if adopted else "started",
                    extra={
                        "job": decision.job,
                        "service": decision.service,
                        "version": decision.version,
                        "attempt": decision.attempt,
                        "reason": decision.reason,
                    },
                )
                running[decision.job] = (decision, build_id, time.monotonic(), uid)
                if adopted and job is not None and _finished(job):
                    results.append(self._finish(job, *running.pop(decision.job)))
            if running:
                try:
                    version = self._follow(running, results, version)
                except (urllib3.exceptions.HTTPError, OSError):
                    if self._stopping.is_set():  # the watch shut down by `interrupt`
                        self._interrupted(running)
                    raise
        return results

    def _interrupted(self, running: Running) -> NoReturn:
        for decision, build_id, _, _ in running.values():
            self.store.finish_build(
                build_id,
                outcome="interrupted",
                reason="the daemon stopped; its next start adopts the Job if it still builds the same source",
            )
            log.info("build interrupted", extra={"job": decision.job, "reason": "the daemon stopped"})
        if not running:
            raise BuildsInterrupted("stopped before its builds started")
        raise BuildsInterrupted(
            f"stopped while following {len(running)} builds; their Jobs run on for the next start to adopt"
        )

    def _adoptable(self, job: Manifest, decision: BuildDecision) -> bool:
        annotations = job["metadata"].get("annotations", {})
        return (
            annotations.get(TRACKING_ANNOTATION) == self.tracking
            and annotations.get(SOURCE_ANNOTATION) == decision.fingerprint
            and _failed(job) is None
        )

    def _start(
        self, decision: BuildDecision, old: Manifest | None, service: Service, gates: Sequence[str]
    ) -> str:
        """Creates the Job (replacing a finished one of the same name); returns its uid."""
        namespace = self.settings.build_namespace
        if old is not None:
            if old["metadata"].get("annotations", {}).get(TRACKING_ANNOTATION) != self.tracking:
                raise client.ApiException(status=409, reason=f"Job {decision.job} exists and is not ours")
            resources.delete(self.api, "Job", namespace, decision.job)
        body = build_job(service, self.settings, gates)
        body["metadata"]["annotations"][TRACKING_ANNOTATION] = self.tracking
        for attempt in range(20):  # the old Job's name is freed once its deletion is processed
            try:
                created = resources.call(self.api, "POST", resources.JOB.path(namespace), body=body)
                return str(created["metadata"]["uid"])
            except client.ApiException as err:
                if err.status != 409 or attempt == 19:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def _follow(self, running: Running, results: list[BuildResult], version: str) -> str:
        """One watch on the build Jobs; returns when one of ours finished or the watch ended."""
        timeout = self.settings.build_deadline_seconds + 60
        query = [
            ("watch", "true"),
            ("labelSelector", SELECTOR),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout)),
        ]
        verb, url, headers, _, _ = self.api.param_serialize(
            "GET",
            resources.JOB.path(self.settings.build_namespace),
            query_params=query,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json"},
        )
        response = self.api.call_api(verb, url, header_params=headers, _request_timeout=(10, timeout + 30))
        with self._watch_lock:
            self._watch = response.response
        buffer = b""
        try:
            if self._stopping.is_set():  # interrupted before there was a watch to end
                self._interrupted(running)
            if response.status == 410:
                response.read()
                return self._relist(running, results)
            if response.status != 200:
                response.read()
                raise client.ApiException(http_resp=response)
            for chunk in response.response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    job = event["object"]
                    if event["type"] == "ERROR":
                        return self._relist(running, results)
                    version = job["metadata"]["resourceVersion"]
                    name = job["metadata"].get("name")
                    if (
                        (event["type"] == "MODIFIED" or event["type"] == "ADDED")
                        and _ours(job, running)
                        and _finished(job)
                    ):
                        results.append(self._finish(job, *running.pop(name)))
                        return version
        finally:
            with self._watch_lock:
                self._watch = None
                response.response.release_conn()
        return version

    def _relist(self, running: Running, results: list[BuildResult]) -> str:
        listed = resources.call(
            self.api,
            "GET",
            resources.JOB.path(self.settings.build_namespace),
            query=[("labelSelector", SELECTOR)],
        )
        for job in listed.get("items", []):
            name = job["metadata"]["name"]
            if _ours(job, running) and _finished(job):
                results.append(self._finish(job, *running.pop(name)))
        return str(listed["metadata"]["resourceVersion"])

    def _finish(
        self, job: Manifest, decision: BuildDecision, build_id: int, started: float, uid: str
    ) -> BuildResult:
        pod = self._pod(uid)
        terminated = _terminated(pod)
        failure = _failed(job)
        if failure is None:
            digest = (terminated.get("message") or "").strip()
            if DIGEST.match(digest):
                result = BuildResult(decision, True, digest=digest)
            else:
                result = BuildResult(
                    decision,
                    False,
                    reason="the build reported no image digest",
                    log_tail=self._log_tail(pod, terminated),
                )
        else:
            result = BuildResult(decision, False, reason=failure, log_tail=self._log_tail(pod, terminated))
        outcome = "succeeded" if result.succeeded else "failed"
        self.store.finish_build(
            build_id, outcome=outcome, digest=result.digest, reason=result.reason, log_tail=result.log_tail
        )
        metrics.BUILDS.labels(outcome=outcome).inc()
        metrics.BUILD_DURATION.observe(time.monotonic() - started)
        level = logging.INFO if result.succeeded else logging.WARNING
        log.log(
            level,
            "build %s",
            outcome,
            extra={
                "job": decision.job,
                "digest": result.digest,
                "reason": result.reason,
                "log_tail": result.log_tail,
            },
        )
        return result

    def _pod(self, job_uid: str) -> Manifest | None:
        query = [("labelSelector", f"batch.kubernetes.io/controller-uid={job_uid}")]
        listed = resources.call(
            self.api, "GET", resources.POD.path(self.settings.build_namespace), query=query
        )
        pods: list[Manifest] = listed.get("items", [])
        return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)

    def _log_tail(self, pod: Manifest | None, terminated: dict[str, Any]) -> str | None:
        if pod is None:
            return None
        try:
            data = self.api.call_api(
                *self.api.param_serialize(
                    "GET",
                    resources.POD.path(self.settings.build_namespace, pod["metadata"]["name"]) + "/log",
                    query_params=[("tailLines", str(LOG_LINES))],
                    auth_settings=["BearerToken"],
                )[:3],
                _request_timeout=10,
            )
            text = data.read().decode(errors="replace") if data.status == 200 else ""
        except (urllib3.exceptions.HTTPError, OSError):
            text = ""
        return (text or terminated.get("message") or "").strip()[-4000:] or None


def _ours(job: Manifest, running: Running) -> bool:
    """An event of the Job this build started (not of a deleted predecessor with the same name)."""
    entry = running.get(job["metadata"].get("name", ""))
    return entry is not None and entry[3] == job["metadata"].get("uid")


def _conditions(job: Manifest) -> dict[str, dict[str, Any]]:
    return {
        c["type"]: c for c in job.get("status", {}).get("conditions", []) or [] if c.get("status") == "True"
    }


def _finished(job: Manifest) -> bool:
    conditions = _conditions(job)
    return "Complete" in conditions or "Failed" in conditions


def _failed(job: Manifest) -> str | None:
    condition = _conditions(job).get("Failed")
    if condition is None:
        return None
    return f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".strip(": ")


def _terminated(pod: Manifest | None) -> dict[str, Any]:
    for status in (pod or {}).get("status", {}).get("containerStatuses", []) or []:
        terminated = status.get("state", {}).get("terminated")
        if terminated:
            return dict(terminated)
    return {}
