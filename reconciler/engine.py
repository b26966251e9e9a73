"""One reconcile run, read as the pipeline: fetch -> load -> render -> observe -> plan ->
apply -> assess, recorded exactly once (history, metrics, log) however it ends.

An invalid commit applies nothing and keeps the last good revision applied; a broken cluster
or repository fails the run and the next trigger retries. Only one run happens at a time.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import urllib3
from kubernetes import client

from reconciler import metrics
from reconciler.cluster import resources
from reconciler.cluster.builder import Builder, BuildResult, BuildsInterrupted
from reconciler.cluster.cache import ObjectCache
from reconciler.cluster.client import RequestCounter
from reconciler.kafka.admin import KafkaUnavailable, TopicAdmin
from reconciler.plan import (
    HASH_ANNOTATION,
    Action,
    Manifest,
    ObjectRef,
    Outcome,
    Plan,
    Verb,
    compute,
    stamp,
    topics,
)
from reconciler.plan.builds import BuildDecision, BuildState, decide
from reconciler.plan.health import AppStatus, assess
from reconciler.plan.rollout import Held, keep_live, rollouts, waiting
from reconciler.redact import redact
from reconciler.render import Renderer, ServiceId, Settings, build_gates, builds_needed, compose, render
from reconciler.render.labels import MANAGED_BY, MANAGED_BY_LABEL, applications_of
from reconciler.render.topics import kafka_topics, resource_name
from reconciler.source.files import SourceError
from reconciler.source.git import Commit, GitSource, Snapshot
from reconciler.source.previous import PreviousConfigs
from reconciler.spec import Spec, SpecError
from reconciler.spec.loader import Loader
from reconciler.spec.model import Service
from reconciler.store import ActionRecord, AppStatusRecord, Store, StoreError

log = logging.getLogger("mico_reconciler.engine")
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
#: A run that repeats a settled one (same commit, no watch event) skips the broker's topics and
#: the comparison of every object; at least this often a run does both anyway (a topic deleted
#: at the broker has no watch to tell).
FULL_PASS_SECONDS = 600.0
#: The triggers a run may repeat a settled one for; any other (a webhook, startup, a `sync`)
#: makes the full pass, so a user can always ask for one.
REPEATABLE = ("schedule", "progress")


class FencedError(Exception):
    """This replica may no longer be the leader: it must not write."""


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    INVALID = "invalid"
    REFUSED = "refused"
    FAILED = "failed"
    #: stopped by SIGTERM while it followed builds (a run cut short by kill -9 is marked so at the next start)
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Options:
    settings: Settings
    tracking: str
    field_manager: str = "mico-reconciler"
    force_conflicts: bool = True
    self_heal: bool = True
    max_prune_fraction: float = 0.5
    force_prune: bool = False
    concurrency: int = 8
    build_concurrency: int = 2
    build_backoff_seconds: float = 30
    #: "admin": topics through the Kafka Admin API; "strimzi": as KafkaTopic resources;
    #: "off": the reconciler leaves topics alone.
    topics: str = "admin"
    strimzi_cluster: str = "my-cluster"
    kafka_admin_bootstrap_servers: str | None = None
    topic_partitions: int = 1
    topic_replication_factor: int = 1
    topic_deletion: bool = False
    kafka_backoff_seconds: float = 10


@dataclass
class RunResult:
    run_id: int
    trigger: str
    outcome: RunOutcome = RunOutcome.FAILED
    revision: str | None = None
    #: the revision's summary and author, for the history
    commit: Commit | None = None
    error: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: every problem found; `problems` keeps the first ones and a line that counts the rest
    problem_count: int = 0
    plan: Plan | None = None
    executed: list[tuple[Action, Outcome, str | None]] = field(default_factory=list)
    statuses: list[AppStatus] = field(default_factory=list)
    api_requests: int = 0
    duration: float = 0.0
    builds: list[BuildResult] = field(default_factory=list)
    #: When a build or the Kafka step may be retried after a failure (the daemon runs again then).
    retry_at: float | None = None
    topics: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The live objects the last plan of this run was made against.
    live: dict[ObjectRef, Manifest] = field(default_factory=dict)
    #: Applications held at their previous revision by a build, as the last plan left them.
    held: dict[str, Held] = field(default_factory=dict)
    #: Seconds spent in each stage (fetch, load, render, observe, plan, apply, ...).
    stages: dict[str, float] = field(default_factory=dict)
    #: Work done, not taken from memory: files parsed, objects rendered, objects compared.
    work: dict[str, int] = field(default_factory=dict)
    #: Nothing could have changed since the run it repeats (same commit, no watch event): its
    #: findings are that run's, and nothing was loaded, rendered or compared.
    repeated: bool = False
    #: Seconds from the run's start until its last write of objects returned (None: it made
    #: no plan): when a commit is applied, as seen from the cluster.
    applied_after: float | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Settled:
    """What a run that left nothing to do found, and what it depended on."""

    revision: str
    #: The object cache's change count when the run ended.
    changes: int
    #: When the run last listed the broker's topics and compared every object (monotonic).
    checked_at: float
    result: RunResult
    #: The row of history that records it (and counts its repeats).
    recorded_on: int


def _shared_failure(executed: Iterable[tuple[Action, Outcome, str | None]]) -> str:
    """The failure most failed objects share (an apiserver gone, a quota) says more than their
    count: "; N of them: WHY", each object counted once (its last failure)."""
    last = {a.ref: reason for a, outcome, reason in executed if outcome == Outcome.FAILED and reason}
    if not last:
        return ""
    reason, count = Counter(last.values()).most_common(1)[0]
    return f"; {count} of them: {reason}"


_APPLY_OUTCOME = {Verb.CREATE: Outcome.CREATED, Verb.UPDATE: Outcome.CONFIGURED, Verb.DELETE: Outcome.DELETED}


class Engine:
    def __init__(
        self,
        *,
        source: GitSource,
        api: client.ApiClient,
        counter: RequestCounter,
        store: Store,
        options: Options,
        objects: ObjectCache | None = None,
    ) -> None:
        self.source = source
        self.api = api
        self.counter = counter
        self.store = store
        self.options = options
        self.objects = objects
        self._lock = threading.Lock()
        self._spec_cache: tuple[str, Spec] | None = None
        self.loader = Loader()
        self.renderer = Renderer(options.settings)
        self._stamped: dict[int, tuple[Manifest, Manifest]] = {}
        self._settled: _Settled | None = None
        self._collected_at = time.monotonic()
        self._needed: tuple[Spec, dict[ServiceId, Service], dict[ServiceId, tuple[str, ...]]] | None = None
        self._rendered: tuple[tuple[Any, ...], list[Manifest]] | None = None
        self.previous = PreviousConfigs(source, store, options.settings)
        self.kafka = TopicAdmin(
            options.kafka_admin_bootstrap_servers or options.settings.kafka_bootstrap_servers
        )
        self._kafka_failures = 0
        self.builder = Builder(
            api, store, options.settings, options.tracking, concurrency=options.build_concurrency
        )
        self._verified: dict[ObjectRef, tuple[str, str]] = {}
        #: Set by the daemon under leader election: whether this replica may still write.
        self.fence: Callable[[], bool] | None = None

    @property
    def last_spec(self) -> tuple[str, Spec] | None:
        """The last config that loaded, and its revision (read by the status page's threads:
        one reference, replaced whole)."""
        return self._spec_cache

    def run(self, trigger: str) -> RunResult:
        with self._lock:
            requests_before = self.counter.total
            work_before = self._work()
            # watch events from here on are not taken as seen by this run (see `_settle`)
            changes = self.objects.changes if self.objects is not None else 0
            result = RunResult(self.store.start_run(trigger), trigger)
            started = result.started
            try:
                self._reconcile(result)
            except SourceError as err:
                metrics.GIT_FETCH_ERRORS.inc()
                result.error = str(err)
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as err:
                result.error = f"Kubernetes API: {describe_error(err)}"
            except StoreError as err:  # damaged rows the run needed: fail it, keep the daemon up
                result.error = str(err)
            except FencedError as err:
                log.error("%s", err)
                result.error = str(err)
            except BuildsInterrupted as err:
                result.outcome = RunOutcome.INTERRUPTED
                result.error = str(err)
            except Exception as err:  # a bug must fail one run with a record, not the loop
                log.exception("unexpected error in a run")
                result.error = redact(
                    f"unexpected error (a bug, its traceback is logged): {describe_error(err)}"
                )
            finally:
                result.api_requests = self.counter.total - requests_before
                result.work = {key: count - work_before[key] for key, count in self._work().items()}
                compared = result.plan.compared if result.plan and not result.repeated else 0
                result.work["objects_compared"] = compared
                with _timed(result, "record"):
                    recorded_on = self._record(result)
                with _timed(result, "gc"):
                    self._freeze_survivors()
                result.duration = time.monotonic() - started
                self._export(result, recorded=recorded_on is not None)
                self._settle(result, changes, recorded_on)
            return result

    def _freeze_survivors(self) -> None:
        """Move what outlived the run (the watch cache, the loader's and renderer's memory) out of
        the garbage collector's sight: a full collection of it costs a change hundreds of
        milliseconds. Freed objects are still freed at once (by reference count); only cyclic
        garbage among them waits for the full collection made at most every FULL_PASS_SECONDS."""
        now = time.monotonic()
        if now - self._collected_at > FULL_PASS_SECONDS:
            gc.unfreeze()
            gc.collect()
            self._collected_at = now
        else:
            # what is not frozen came into being since the last run: a full collection looks at
            # that alone, and frees this run's cycles that reached the oldest generation too
            gc.collect()
        gc.freeze()

    def _work(self) -> dict[str, int]:
        return {"files_parsed": self.loader.files_parsed, "objects_rendered": self.renderer.objects_rendered}

    def _repeats(self, result: RunResult) -> bool:
        """Whether nothing can have changed since the last run that left nothing to do: the same
        commit, no watch event since (the cache counts them), a scheduled or re-check trigger and
        a full pass not yet due. Then that run's findings stand, and nothing is loaded, rendered
        or compared."""
        settled = self._settled
        if (
            settled is None
            or result.trigger not in REPEATABLE
            or self.objects is None
            or settled.revision != result.revision
            or settled.changes != self.objects.changes
            or time.monotonic() - settled.checked_at > FULL_PASS_SECONDS
        ):
            return False
        before = settled.result
        result.outcome, result.plan, result.statuses = before.outcome, before.plan, before.statuses
        result.topics, result.live, result.repeated = before.topics, before.live, True
        return True

    def _settle(self, result: RunResult, changes: int, recorded_on: int | None) -> None:
        """Remember a run that left nothing to do, for the runs that repeat it (`_repeats`), with
        the cache's change count from before it observed anything: an event during the run may
        have come after its LIST of that kind, so the next run looks again."""
        if result.repeated and self._settled is not None:
            if recorded_on is not None:
                self._settled = replace(self._settled, recorded_on=recorded_on)
            return
        done = (
            result.outcome == RunOutcome.SUCCEEDED
            and not result.executed
            and not result.builds
            and not result.held
            and result.retry_at is None
        )
        if done and self.objects is not None and result.revision and recorded_on is not None:
            self._settled = _Settled(result.revision, changes, result.started, result, recorded_on)
        else:
            self._settled = None

    def interrupt(self) -> None:
        """Cut the run in progress short where it waits long (following builds), so that a
        stopping daemon exits well within a termination grace period."""
        self.builder.interrupt()

    def _reconcile(self, result: RunResult) -> None:
        with _timed(result, "fetch"):
            snapshot = self._fetch()
        result.revision = snapshot.revision
        result.commit = snapshot.commit
        if self._repeats(result):
            return
        if snapshot.rewritten:
            log.warning(
                "the config history was rewritten (force-push); following the new commit",
                extra={"revision": snapshot.revision},
            )
        try:
            with _timed(result, "load"):
                spec = self._spec(snapshot)
        except SpecError as err:
            result.outcome = RunOutcome.INVALID
            result.problems = [p.as_dict() for p in err.problems]
            result.problem_count = err.total
            result.error = f"{err.total} validation problems; nothing applied"
            return
        with _timed(result, "decide"):
            needed, gates = self._builds_needed(spec)
            decisions = self._decide(needed)
        # first pass: every application whose images exist; then builds; then the applications
        # they released (each rolls out whole, once all of its builds succeeded)
        self._converge(result, spec, decisions)
        to_start = [d for d in decisions.values() if d.state == BuildState.START]
        if to_start:
            self._check_fence()
            with _timed(result, "builds"):
                result.builds = self.builder.build(result.run_id, to_start, needed, gates)
            decisions = self._decide(needed)
            self._converge(result, spec, decisions)
        with _timed(result, "topics"):
            kafka_error = self._topics(result, spec)
        unbuilt = [d for d in decisions.values() if d.state != BuildState.READY]
        retries = [d.retry_at for d in unbuilt if d.retry_at]
        if kafka_error:
            retries.append(time.time() + self._kafka_backoff())
        result.retry_at = min(retries, default=None)
        failed = {a.ref for a, outcome, _ in result.executed if outcome == Outcome.FAILED}
        plan = result.plan
        if failed:
            result.outcome = RunOutcome.FAILED
            result.error = f"{len(failed)} objects could not be applied{_shared_failure(result.executed)}"
        elif kafka_error:
            result.outcome = RunOutcome.FAILED
            result.error = kafka_error
        elif unbuilt:
            result.outcome = RunOutcome.FAILED
            result.error = "builds not ready: " + "; ".join(
                f"{d.job}: {(d.last_failure or {}).get('reason') or d.reason}" for d in unbuilt
            )
        elif plan is not None and plan.prune_refused:
            result.outcome = RunOutcome.REFUSED
            result.error = (
                f"prune guard: refusing to delete {len(plan.prune_refused)} objects (more than "
                f"{self.options.max_prune_fraction:.0%} of those managed); use --force-prune"
            )
        else:
            result.outcome = RunOutcome.SUCCEEDED

    def _topics(self, result: RunResult, spec: Spec) -> str | None:
        """Create the topics the config names; report the rest. Returns the Kafka error, if any."""
        wanted = self._wanted_topics(spec, result.held)
        managed = self.store.managed_topics()
        if self.options.topics == "strimzi":
            result.topics = self._declared_topics(result, wanted)
            self.store.record_topics(result.run_id, result.topics)
            self._topic_status(result, wanted, result.topics)
            return None
        if self.options.topics == "off" or not (wanted or managed):
            return None
        states: dict[str, tuple[str, str]] = {}
        created: list[str] = []
        deleted: list[str] = []
        vanished: list[str] = []
        try:
            self._check_fence()
            existing = self.kafka.topics(wanted.keys() | managed)
            decided = topics.plan(
                wanted,
                existing,
                managed,
                partitions=self.options.topic_partitions,
                replication_factor=self.options.topic_replication_factor,
                # an application held without its previous revision may still use any topic
                delete_enabled=self.options.topic_deletion
                and all(h.config is not None for h in result.held.values()),
            )
            # owned from before they exist: a stop between creating and recording must not
            # leave a topic this reconciler made unowned (never deleted, never called orphaned)
            if decided.create:
                self.store.record_topics(0, {}, created=decided.create)
            # owned but not on the broker (claimed by a run cut short, or deleted by hand): not
            # ours any more, lest a topic of that name someone makes later be taken for ours
            vanished = sorted(managed - existing.keys() - set(decided.create))
            for operation, outcomes, done in (
                ("create", self._create_topics(decided.create), created),
                ("delete", self.kafka.delete(decided.delete), deleted),
            ):
                for name, problem in outcomes.items():
                    states[name] = (f"{operation} failed", problem) if problem else (f"{operation}d", "")
                    metrics.TOPIC_OPERATIONS.labels(
                        operation=operation, outcome="failed" if problem else "succeeded"
                    ).inc()
                    if not problem:
                        done.append(name)
            states.update(dict.fromkeys(decided.unchanged, ("exists", "")))
            states.update({name: ("mismatched", why) for name, why in decided.mismatched})
            states.update(
                dict.fromkeys(decided.orphaned, ("orphaned", "no longer named by the config; kept"))
            )
            metrics.ORPHANED_TOPICS.set(len(decided.orphaned))
            error = None
            self._kafka_failures = 0
        except KafkaUnavailable as err:
            metrics.KAFKA_ERRORS.inc()
            self._kafka_failures += 1
            states = dict.fromkeys(wanted, ("unknown", "the broker could not be reached"))
            error = f"Kafka: {err}; Kubernetes objects were converged, topics will be retried"
        result.topics = states
        not_created = [name for name, (state, _) in states.items() if state == "create failed"]
        self.store.record_topics(
            result.run_id, states, created=created, deleted=[*deleted, *not_created, *vanished]
        )
        self._topic_status(result, wanted, states)
        return error

    def _wanted_topics(self, spec: Spec, held: dict[str, Held]) -> dict[str, list[str]]:
        """The topics of the released applications' new revision, and those of the held ones'
        previous revision."""
        released = {a.key for a in spec.applications} - held.keys()
        wanted = topics.needed(spec.only(released), self.options.settings)
        for hold in held.values():
            if hold.config is not None:
                for name, users in topics.needed(hold.config, self.options.settings).items():
                    wanted.setdefault(name, [])
                    wanted[name] += [u for u in users if u not in wanted[name]]
        return wanted

    def _declared_topics(self, result: RunResult, wanted: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
        """Strimzi mode: a topic exists once its KafkaTopic does; owned KafkaTopics the config no
        longer names are kept (deleting one deletes the topic's data) and reported as orphaned."""
        live = {o["spec"]["topicName"]: ref for ref, o in result.live.items() if ref.kind == "KafkaTopic"}
        applied = {
            a.ref for a, outcome, _ in result.executed if outcome in (Outcome.CREATED, Outcome.CONFIGURED)
        }
        states = {}
        for topic in wanted:
            name = resource_name(topic)
            present = topic in live or any(r.kind == "KafkaTopic" and r.name == name for r in applied)
            states[topic] = (
                ("declared", f"KafkaTopic {name}") if present else ("missing", f"KafkaTopic {name}")
            )
        orphans = [t for t in live if t not in wanted and not self.options.topic_deletion]
        states.update(
            {
                t: ("orphaned", f"KafkaTopic {live[t].name} kept; no longer named by the config")
                for t in orphans
            }
        )
        metrics.ORPHANED_TOPICS.set(len(orphans))
        return states

    def _topic_status(
        self, result: RunResult, wanted: dict[str, list[str]], states: dict[str, tuple[str, str]]
    ) -> None:
        by_application: dict[str, dict[str, dict[str, Any]]] = {}
        for name, users in wanted.items():
            state = states[name][0]
            for usage in users:
                app = usage.split(":", 1)[0]
                entry = by_application.setdefault(app, {}).setdefault(
                    name,
                    {
                        "name": name,
                        "usage": [],
                        "state": state,
                        "exists": None if state == "unknown" else state in _PRESENT,
                    },
                )
                entry["usage"].append(usage)
        for status in result.statuses:
            status.detail["topics"] = list(by_application.get(f"{status.app}@{status.version}", {}).values())

    def _create_topics(self, names: Iterable[str]) -> dict[str, str | None]:
        return self.kafka.create(
            names,
            partitions=self.options.topic_partitions,
            replication_factor=self.options.topic_replication_factor,
        )

    def _kafka_backoff(self) -> float:
        return float(min(600.0, self.options.kafka_backoff_seconds * 2 ** max(0, self._kafka_failures - 1)))

    def _decide(self, needed: dict[tuple[str, str], Service]) -> dict[tuple[str, str], BuildDecision]:
        decisions = decide(
            needed.values(),
            self.store.build_history(),
            settings=self.options.settings,
            now=time.time(),
            backoff_seconds=self.options.build_backoff_seconds,
        )
        for decision in decisions:
            if decision.state == BuildState.START and decision.reason.startswith("the source of an already"):
                log.warning("%s: %s", decision.job, decision.reason, extra={"service": decision.service})
        return {d.key: d for d in decisions}

    def _converge(
        self, result: RunResult, spec: Spec, decisions: dict[tuple[str, str], BuildDecision]
    ) -> None:
        """Observe, plan and apply: applications whose builds all succeeded at the new revision,
        the others at the revision they last rolled out at. A held application loses no object:
        what its new revision drops is pruned once it rolls out."""
        images = {key: d.image for key, d in decisions.items() if d.image is not None}
        held = self.previous.held(waiting(spec, decisions))
        with _timed(result, "observe"):
            actual = self._observe()
        with _timed(result, "render"):
            desired = self._desired(spec, result.revision or "", images, held)
        held, desired = keep_live(held, desired, actual)
        retain = {ref for ref, obj in actual.items() if applications_of(obj) & held.keys()} if held else set()
        if not self.options.topic_deletion:  # a KafkaTopic's deletion would delete the topic's data
            retain |= {ref for ref in actual if ref.kind == "KafkaTopic"}
        with _timed(result, "plan"):
            plan = self._plan(desired, actual, retain)
        result.plan = plan
        result.live = actual
        result.held = held
        with _timed(result, "apply"):
            executed = self._execute(plan.actions, actual)
        result.applied_after = time.monotonic() - result.started
        result.executed += executed
        with _timed(result, "assess"):
            self._assess(result, spec, desired, actual, executed)

    def _plan(
        self, desired: list[Manifest], actual: dict[ObjectRef, Manifest], retain: set[ObjectRef]
    ) -> Plan:
        applied = self.store.applied()
        plan = compute(
            desired,
            actual,
            tracking=self.options.tracking,
            last_applied={ObjectRef(*key): digest for key, digest in applied.items()},
            self_heal=self.options.self_heal,
            max_prune_fraction=self.options.max_prune_fraction,
            force_prune=self.options.force_prune,
            verified=self._verified,
            retain=retain,
        )
        self._verified = {
            ref: (
                actual[ref]["metadata"]["annotations"][HASH_ANNOTATION],
                actual[ref]["metadata"]["resourceVersion"],
            )
            for ref in plan.unchanged
        }
        return plan

    def _assess(
        self,
        result: RunResult,
        spec: Spec,
        desired: list[Manifest],
        actual: dict[ObjectRef, Manifest],
        executed: list[tuple[Action, Outcome, str | None]],
    ) -> None:
        plan, held = result.plan, result.held
        assert plan is not None
        failed = {a.ref for a, outcome, _ in executed if outcome == Outcome.FAILED}
        # recorded now, so a later failure of this run cannot lose what this pass rolled out
        unfinished = [a.manifest or actual.get(a.ref) for a, o, _ in executed if o == Outcome.FAILED]
        unfinished += [actual.get(a.ref) for a in plan.prune_refused]
        foreign = set(plan.foreign)
        unfinished += [o for o in desired if ObjectRef.of(o) in foreign]
        rolled_out = rollouts(
            spec,
            result.revision or "",
            held=held,
            incomplete={app for obj in unfinished if obj for app in applications_of(obj)},
            recorded=self.store.rollouts(),
        )
        if rolled_out:
            self.store.record_rollouts(result.run_id, rolled_out)
        pods = self._list(resources.POD, self.options.settings.namespace)
        pending = failed | {a.ref for a in plan.drift if not self.options.self_heal} | foreign
        result.statuses = assess(
            ((a.short_name, a.version, a.deploy) for a in spec.applications),
            desired,
            actual,
            pods,
            pending,
            held=held,
        )

    def _fetch(self) -> Snapshot:
        with metrics.GIT_FETCH_DURATION.time():
            return self.source.fetch()

    def _spec(self, snapshot: Snapshot) -> Spec:
        """Parse once per revision, and of a new revision only the files that changed."""
        if self._spec_cache is None or self._spec_cache[0] != snapshot.revision:
            self._spec_cache = (snapshot.revision, self.loader.load(snapshot.files))
        return self._spec_cache[1]

    def _builds_needed(self, spec: Spec) -> tuple[dict[ServiceId, Service], dict[ServiceId, tuple[str, ...]]]:
        """The builds and the applications each gates, per parsed revision (the Spec object is
        cached with it)."""
        if self._needed is None or self._needed[0] is not spec:
            every = self.renderer.instances(spec)
            needed = {(s.short_name, s.version): s for s in builds_needed(spec, every)}
            self._needed = (spec, needed, build_gates(spec, every))
        return self._needed[1], self._needed[2]

    def _desired(
        self, spec: Spec, revision: str, images: dict[ServiceId, str], held: dict[str, Held]
    ) -> list[Manifest]:
        """Released applications rendered at `revision`, each held one at its previous revision
        (an instance shared between parts takes the first part's definition: the released one's,
        else the most recently rolled out); once per revision, set of built images and holds."""
        kept = [(app, h.revision, h.config, h.images) for app, h in held.items() if h.config is not None]
        key = (
            revision,
            tuple(sorted(images.items())),
            tuple(held),
            tuple((app, at, tuple(sorted(built.items()))) for app, at, _, built in kept),
        )
        if self._rendered is None or self._rendered[0] != key:
            settings = self.options.settings
            released = spec if not held else spec.only({a.key for a in spec.applications} - held.keys())
            objects = compose(
                [
                    self.renderer.render(released, built=images),
                    *(render(config, settings, built=built) for _, _, config, built in kept),
                ]
            )
            if self.options.topics == "strimzi":
                objects += kafka_topics(
                    self._wanted_topics(spec, held),
                    namespace=self.options.settings.namespace,
                    cluster=self.options.strimzi_cluster,
                    partitions=self.options.topic_partitions,
                    replicas=self.options.topic_replication_factor,
                )
            desired = stamp(objects, self.options.tracking, self._stamped)
            self._rendered = (key, desired)
        return self._rendered[1]

    def _observe(self) -> dict[ObjectRef, Manifest]:
        """One LIST per kind and namespace, selected by the managed-by label (or the watch cache
        those LISTs filled); never a GET per object."""
        return {
            ObjectRef.of(obj): obj
            for resource, namespace in observed(self.options)
            for obj in self._list(resource, namespace)
        }

    def _list(self, resource: resources.Resource, namespace: str) -> list[Manifest]:
        if self.objects is not None:
            return self.objects.list(resource, namespace)
        return resources.list_objects(self.api, resource, namespace, SELECTOR)

    def _execute(
        self, actions: Iterable[Action], live: dict[ObjectRef, Manifest]
    ) -> list[tuple[Action, Outcome, str | None]]:
        actions = list(actions)
        writes = [a for a in actions if a.verb != Verb.DELETE]
        deletes = [a for a in actions if a.verb == Verb.DELETE]
        results: list[tuple[Action, Outcome, str | None]] = []
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            for batch in (writes, deletes):
                results.extend(pool.map(lambda a: self._perform(a, live), batch))
        return results

    def _check_fence(self) -> None:
        if self.fence is not None and not self.fence():
            raise FencedError("not sure to hold the leader lease any more: writing nothing")

    def _perform(self, action: Action, live: dict[ObjectRef, Manifest]) -> tuple[Action, Outcome, str | None]:
        ref = action.ref
        self._check_fence()  # before every write: a replica frozen past its lease thaws here
        try:
            if action.verb == Verb.DELETE:
                resources.delete(self.api, ref.kind, ref.namespace, ref.name)
                live.pop(ref, None)
                if self.objects is not None:
                    self.objects.write_through(ref, None)
            else:
                assert action.manifest is not None
                live[ref] = resources.apply(
                    self.api,
                    action.manifest,
                    field_manager=self.options.field_manager,
                    force=self.options.force_conflicts,
                )
                if self.objects is not None:
                    self.objects.write_through(ref, live[ref])
        except (client.ApiException, urllib3.exceptions.HTTPError) as err:
            if action.verb == Verb.DELETE and isinstance(err, client.ApiException) and err.status == 404:
                return action, Outcome.DELETED, None
            log.error("could not %s %s: %s", action.verb, ref, describe_error(err))
            return action, Outcome.FAILED, describe_error(err)
        return action, _APPLY_OUTCOME[action.verb], None

    # -- recording -----------------------------------------------------------------------------

    def _record(self, result: RunResult) -> int | None:
        plan = result.plan
        records = [
            ActionRecord(
                a.ref.kind,
                a.ref.namespace,
                a.ref.name,
                a.verb.value,
                outcome.value,
                a.reason if error is None else f"{a.reason}; failed: {error}",
                a.drift,
            )
            for a, outcome, error in result.executed
        ]
        if plan is not None:

            def skipped(action: Action, reason: str) -> ActionRecord:
                ref = action.ref
                return ActionRecord(
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    action.verb.value,
                    Outcome.SKIPPED.value,
                    reason,
                    action.drift,
                )

            if not self.options.self_heal:
                records += [skipped(a, f"{a.reason}; self-heal is off") for a in plan.drift]
            records += [skipped(a, f"{a.reason}; refused by the prune guard") for a in plan.prune_refused]
            records += [
                ActionRecord(
                    r.kind,
                    r.namespace,
                    r.name,
                    "none",
                    Outcome.SKIPPED.value,
                    "an object of that name exists and is not managed by this reconciler",
                    False,
                )
                for r in plan.foreign
            ]
        applied: dict[tuple[str, str, str, str], str | None] = {}
        for action, outcome, _ in result.executed:
            key = (action.ref.api_version, action.ref.kind, action.ref.namespace, action.ref.name)
            if outcome == Outcome.DELETED:
                applied[key] = None
            elif outcome in (Outcome.CREATED, Outcome.CONFIGURED) and action.manifest is not None:
                applied[key] = action.manifest["metadata"]["annotations"][HASH_ANNOTATION]
        # None when the state database took no writes: the run goes on unrecorded (the store
        # counts and logs that, and keeps what later runs need), this log line is its record
        return self.store.finish_run(
            result.run_id,
            outcome=result.outcome.value,
            revision=result.revision,
            error=result.error,
            api_requests=result.api_requests,
            actions=records,
            problems=result.problems,
            statuses=[
                AppStatusRecord(s.app, s.version, s.deployment.value, s.sync.value, s.detail)
                for s in result.statuses
            ],
            applied=applied,
            repeats=self._settled.recorded_on if result.repeated and self._settled else None,
            commit=(result.commit.summary, result.commit.author, result.commit.committed)
            if result.commit is not None
            else None,
        )

    def _export(self, result: RunResult, *, recorded: bool = True) -> None:
        metrics.RECONCILE_DURATION.observe(result.duration)
        for stage, seconds in result.stages.items():
            metrics.STAGE_DURATION.labels(stage=stage).observe(seconds)
        metrics.RUNS.labels(outcome=result.outcome.value, trigger=result.trigger).inc()
        metrics.SPEC_PROBLEMS.set(result.problem_count)
        for action, outcome, _ in result.executed:
            if outcome in (Outcome.CREATED, Outcome.CONFIGURED):
                metrics.OBJECTS_APPLIED.labels(kind=action.ref.kind, outcome=outcome.value).inc()
            elif outcome == Outcome.DELETED:
                metrics.OBJECTS_PRUNED.labels(kind=action.ref.kind).inc()
        for action in result.plan.drift if result.plan else ():
            metrics.DRIFT.labels(kind=action.ref.kind).inc()
        for status in result.statuses:
            metrics.set_application_status(
                status.app, status.version, status.deployment, status.sync.value == "Synced"
            )
        if result.outcome == RunOutcome.SUCCEEDED and result.revision:
            metrics.LAST_SUCCESS.set_to_current_time()
            metrics.APPLIED_REVISION.info({"revision": result.revision})
        level = logging.INFO if result.outcome == RunOutcome.SUCCEEDED else logging.WARNING
        log.log(
            level,
            "run %s",
            result.outcome.value,
            extra={
                "run": result.run_id if result.run_id > 0 else None,  # a row of history, if any
                "recorded": recorded,
                "trigger": result.trigger,
                "outcome": result.outcome.value,
                "revision": result.revision,
                "error": result.error,
                "duration_seconds": round(result.duration, 3),
                "api_requests": result.api_requests,
                "problems": [_problem_line(p) for p in result.problems],
                "actions": [f"{o.value} {a.ref}: {a.reason}" for a, o, _ in result.executed],
                "drift": [f"{a.ref}: {a.reason}" for a in (result.plan.drift if result.plan else ())],
                "repeated": result.repeated,
                "stages_ms": {stage: round(1000 * seconds, 1) for stage, seconds in result.stages.items()},
                "work": result.work,
            },
        )


@contextlib.contextmanager
def _timed(result: RunResult, stage: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        result.stages[stage] = result.stages.get(stage, 0.0) + time.monotonic() - started


def observed(options: Options) -> list[tuple[resources.Resource, str]]:
    """The kinds the reconciler manages, by namespace: what a run lists, or a cache watches."""
    namespace = options.settings.namespace
    kinds = [resources.DEPLOYMENT, resources.SERVICE]
    if options.topics == "strimzi":
        kinds.append(resources.KAFKA_TOPIC)
    return [(kind, namespace) for kind in kinds]


def _problem_line(problem: dict[str, Any]) -> str:
    return (
        f"{problem['file']}:{problem['line']}:{problem['column']}: {problem['field']}: {problem['message']}"
    )


def describe_error(err: BaseException) -> str:
    if isinstance(err, client.ApiException):
        return f"{err.status} {err.reason}: {(err.body or '')[:300]}"
    if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
        err = err.reason  # why it failed, the same for every object, not the URL it failed for
    return f"{type(err).__name__}: {err}"


_PRESENT = ("created", "exists", "mismatched", "orphaned", "delete failed", "declared")
