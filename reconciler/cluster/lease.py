"""Leader election with a coordination.k8s.io Lease, so two replicas never reconcile at once.

Uses the client library's LeaseLock on our own ApiClient. Losing the lease ends the process:
a restart re-joins as a follower with a clean state, as client-go based controllers do. A
leader that stops on purpose releases the lease (no holder, as client-go's ReleaseOnCancel
does), so a follower takes over at its next poll instead of after the lease duration.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("mico_reconciler.lease")


def lease_name(tracking: str) -> str:
    """Replicas of one reconciler instance share a lease; other instances do not block them."""
    return f"mico-reconciler-{hashlib.sha256(tracking.encode()).hexdigest()[:10]}"


class _Election(leaderelection.LeaderElection):
    """The library's election, with a faster poll while following (a released lease is taken
    within a second) and no renewal once the leader is stopping (it would take the lease back)."""

    def __init__(
        self,
        config: electionconfig.Config,
        stopping: threading.Event,
        poll_seconds: float,
        renewed: Callable[[float], None],
    ):
        super().__init__(config)
        self._stopping = stopping
        self._poll_seconds = poll_seconds
        self._renewed = renewed

    def acquire(self) -> bool:
        renew_every = self.election_config.retry_period
        self.election_config.retry_period = self._poll_seconds
        try:
            return bool(super().acquire())
        finally:
            self.election_config.retry_period = renew_every

    def try_acquire_or_renew(self) -> bool:
        if self._stopping.is_set():
            return False
        started = time.monotonic()
        held = bool(super().try_acquire_or_renew())
        if held:
            self._renewed(started)
        return held


class Leadership:
    """One replica's part in the election: `lead` blocks (run it in a thread), `release` hands
    the lease over when the process stops."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        lease_seconds: int = 15,
        renew_deadline_seconds: int = 10,
        renew_seconds: float = 2,
        poll_seconds: float = 1,
    ) -> None:
        self.where = f"{namespace}/{name}"
        self.identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self._namespace, self._name = namespace, name
        self._leases = client.CoordinationV1Api(api)
        self._lock = LeaseLock(name, namespace, self.identity)
        self._lock.api_instance = self._leases
        self._timing = (lease_seconds, renew_deadline_seconds, renew_seconds, poll_seconds)
        self._stopping = threading.Event()
        self._leading = threading.Event()
        self._renewed_at = -math.inf  # monotonic: a frozen process (SIGSTOP) sees the time it lost

    def lead(self, on_leading: Callable[[], None]) -> None:
        """Blocks: waits for the lease, runs `on_leading` in a thread while renewing it."""
        lease_seconds, deadline, renew_seconds, poll_seconds = self._timing

        def started() -> None:
            self._leading.set()
            on_leading()

        def lost() -> None:
            if self._stopping.is_set():
                return  # released on purpose; the process is on its way out
            log.error(
                "lost the leader lease; exiting so a restart re-joins as a follower",
                extra={"lease": self.where, "identity": self.identity},
            )
            os._exit(1)

        log.info("waiting for the leader lease", extra={"lease": self.where, "identity": self.identity})
        config = electionconfig.Config(self._lock, lease_seconds, deadline, renew_seconds, started, lost)
        _Election(config, self._stopping, poll_seconds, self._renewed).run()

    def _renewed(self, started: float) -> None:
        self._renewed_at = started

    def may_write(self) -> bool:
        """Fencing: true only while this replica's last renewal is recent enough that no other
        can have taken the lease (it must wait the lease duration after the last renewal it saw;
        the renew deadline leaves the margin). A process frozen past it (SIGSTOP, a long GC
        pause) thaws with this false and writes nothing before its renew loop ends it."""
        _, deadline, _, _ = self._timing
        return (
            self._leading.is_set()
            and not self._stopping.is_set()
            and time.monotonic() - self._renewed_at < deadline
        )

    def release(self) -> None:
        """Gives the lease up if this replica holds it; a failure only costs the successor the
        lease duration, so it is logged, not raised."""
        self._stopping.set()
        if not self._leading.is_set():
            return
        try:
            lease = self._leases.read_namespaced_lease(self._name, self._namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self._leases.replace_namespaced_lease(self._name, self._namespace, lease)  # resourceVersion kept
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            log.warning(
                "could not release the leader lease",
                extra={"lease": self.where, "error": type(err).__name__},
            )
            return
        log.info("released the leader lease", extra={"lease": self.where, "identity": self.identity})
