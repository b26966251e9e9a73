"""The daemon: HTTP up first, then (as leader) a scheduled reconcile with jitter plus webhook
triggers, all feeding one coalescing run loop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from kubernetes import client

from reconciler.cluster import lease
from reconciler.daemon.http import Endpoints
from reconciler.daemon.trigger import Coalescer, Rechecks, Timer, start_timer
from reconciler.engine import Engine, RunResult
from reconciler.plan.health import DeploymentStatus
from reconciler.web.pages import Pages

log = logging.getLogger("mico_reconciler.daemon")


class ListenError(Exception):
    """The HTTP address cannot be bound (taken, or not this host's)."""


@dataclass(frozen=True)
class DaemonOptions:
    interval: float
    host: str
    port: int
    webhook_secret: bytes | None
    lease_api: client.ApiClient | None
    lease_namespace: str
    lease_name: str
    progress_interval: float = 5
    #: the path an ingress serves the daemon under ("" = at the root)
    url_prefix: str = ""


class RunLoop:
    """What the daemon runs: one engine run at a time (a `Coalescer`), then the timers the run
    asks for: a retry when a failed build's or the broker's backoff ends, and the re-check of a
    Pending rollout (`Rechecks`: one timer at a time, backing off while nothing changes)."""

    def __init__(
        self,
        run: Callable[[str], RunResult],
        *,
        interval: float,
        progress_interval: float,
        start_timer: Callable[[float, Callable[[], None]], Timer] = start_timer,
    ) -> None:
        self._run = run
        self.first_run_done = threading.Event()
        self.coalescer = Coalescer(self._one)
        self.rechecks = Rechecks(
            self.coalescer.trigger, first=progress_interval, longest=interval, start_timer=start_timer
        )
        self._previous: RunResult | None = None
        self._start_timer = start_timer
        self._retry: Timer | None = None

    def start(self) -> None:
        self.coalescer.start()

    def trigger(self, reason: str) -> None:
        self.coalescer.trigger(reason)

    def stop(self) -> None:
        self.coalescer.stop()  # the run in progress finishes, and may arm a re-check:
        self.rechecks.stop()
        if self._retry is not None:
            self._retry.cancel()

    def _one(self, trigger: str) -> RunResult:
        try:
            result = self._run(trigger)
        finally:
            self.first_run_done.set()
        if self._retry is not None:  # one retry timer, re-armed by every run: never a pile
            self._retry.cancel()
            self._retry = None
        if result.retry_at is not None:  # a failed build's or the broker's backoff ends: retry then
            self._retry = self._start_timer(
                max(1.0, result.retry_at - time.time()), lambda: self.coalescer.trigger("retry")
            )
        # follow a rollout until it settles, instead of waiting a whole interval
        self.rechecks.after_run(
            pending=any(s.deployment == DeploymentStatus.PENDING for s in result.statuses),
            changed=progressed(result, self._previous),
        )
        self._previous = result
        return result


def progressed(result: RunResult, previous: RunResult | None) -> bool:
    """Whether a run changed something since the run before it: a new revision or outcome, an
    object applied or deleted (or tried), a build, or any change in the applications' status
    (replicas, pods, sync)."""
    return (
        previous is None
        or result.revision != previous.revision
        or result.outcome != previous.outcome
        or bool(result.executed)
        or bool(result.builds)
        or result.statuses != previous.statuses
    )


def serve(engine: Engine, options: DaemonOptions) -> None:
    leading = threading.Event()
    loop = RunLoop(engine.run, interval=options.interval, progress_interval=options.progress_interval)
    endpoints = Endpoints(
        store=engine.store,
        trigger=loop.trigger,
        ready=lambda: loop.first_run_done.is_set() or not leading.is_set(),
        webhook_secret=options.webhook_secret,
        pages=Pages(
            engine.store, lambda: engine.last_spec, engine.options.settings, prefix=options.url_prefix
        ),
    )
    try:
        server = endpoints.serve(options.host, options.port)
    except OSError as err:
        raise ListenError(f"--listen {options.host}:{options.port}: {err.strerror or err}") from err
    log.info("listening", extra={"address": f"http://{options.host}:{server.server_address[1]}"})
    stop = threading.Event()
    scheduler = BackgroundScheduler()

    def on_signal(number: int, _: FrameType | None) -> None:
        log.info("stopping on signal %d", number)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def reconcile_while_leading() -> None:
        leading.set()
        loop.start()
        scheduler.add_job(
            loop.trigger,
            IntervalTrigger(seconds=options.interval, jitter=options.interval / 10),
            args=["schedule"],
            id="schedule",
            coalesce=True,
            max_instances=1,
        )
        scheduler.start()
        loop.trigger("startup")
        stop.wait()

    leadership = None
    if options.lease_api is None:
        threading.Thread(target=reconcile_while_leading, name="leader", daemon=True).start()
    else:
        leadership = lease.Leadership(
            options.lease_api,
            namespace=options.lease_namespace,
            name=options.lease_name,
        )
        engine.fence = leadership.may_write
        threading.Thread(
            target=leadership.lead, args=[reconcile_while_leading], name="lease", daemon=True
        ).start()
    stop.wait()
    if scheduler.running:
        scheduler.shutdown(wait=False)
    engine.interrupt()  # a run following builds stops at once; their Jobs are adopted later
    loop.stop()  # the run in progress finishes (its history is written) before the hand-over
    if leadership is not None:
        leadership.release()
    server.shutdown()
