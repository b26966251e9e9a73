"""The daemon: HTTP up first, then (as leader) a scheduled reconcile with jitter plus webhook
triggers, all feeding one coalescing run loop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from kubernetes import client

from reconciler.cluster import lease
from reconciler.daemon.http import Endpoints
from reconciler.daemon.trigger import Coalescer
from reconciler.engine import Engine, RunResult
from reconciler.plan.health import DeploymentStatus

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


def serve(engine: Engine, options: DaemonOptions) -> None:
    first_run_done = threading.Event()
    leading = threading.Event()

    def run(trigger: str) -> RunResult:
        try:
            result = engine.run(trigger)
        finally:
            first_run_done.set()
        if result.retry_at is not None:  # a failed build's backoff ends: retry then
            retry = threading.Timer(
                max(1.0, result.retry_at - time.time()), coalescer.trigger, args=["build-retry"]
            )
            retry.daemon = True
            retry.start()
        if any(s.deployment == DeploymentStatus.PENDING for s in result.statuses):
            # follow a rollout until it settles, instead of waiting a whole interval
            timer = threading.Timer(options.progress_interval, coalescer.trigger, args=["progress"])
            timer.daemon = True
            timer.start()
        return result

    coalescer = Coalescer(run)
    endpoints = Endpoints(
        store=engine.store,
        trigger=coalescer.trigger,
        ready=lambda: first_run_done.is_set() or not leading.is_set(),
        webhook_secret=options.webhook_secret,
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
        coalescer.start()
        scheduler.add_job(
            coalescer.trigger,
            IntervalTrigger(seconds=options.interval, jitter=options.interval / 10),
            args=["schedule"],
            id="schedule",
            coalesce=True,
            max_instances=1,
        )
        scheduler.start()
        coalescer.trigger("startup")
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
        threading.Thread(
            target=leadership.lead, args=[reconcile_while_leading], name="lease", daemon=True
        ).start()
    stop.wait()
    if scheduler.running:
        scheduler.shutdown(wait=False)
    coalescer.stop()  # the run in progress finishes (its history is written) before the hand-over
    if leadership is not None:
        leadership.release()
    server.shutdown()
