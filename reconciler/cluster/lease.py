"""Leader election with a coordination.k8s.io Lease, so two replicas never reconcile at once.

Uses the client library's LeaseLock on our own ApiClient. Losing the lease ends the process:
a restart re-joins as a follower with a clean state, as client-go based controllers do. A
leader that stops on purpose releases the lease (no holder, as client-go's ReleaseOnCancel
does), so a follower takes over at its next poll instead of after the lease duration.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
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

    def __init__(self, config: electionconfig.Config, stopping: threading.Event, poll_seconds: float):
        super().__init__(config)
        self._stopping = stopping
        self._poll_seconds = poll_seconds

    def acquire(self) -> bool:
        renew_every = self.election_config.retry_period
        self.election_config.retry_period = self._poll_seconds
        try:
            return bool(super().acquire())
        finally:
            self.election_config.retry_period = renew_every

    def try_acquire_or_renew(self) -> bool:
        return False if self._stopping.is_set() else bool(super().try_acquire_or_renew())


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
        _Election(config, self._stopping, poll_seconds).run()

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
