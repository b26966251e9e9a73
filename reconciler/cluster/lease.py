"""Leader election with a coordination.k8s.io Lease, so two replicas never reconcile at once.

Uses the client library's LeaseLock on our own ApiClient. Losing the lease ends the process:
a restart re-joins as a follower with a clean state, as client-go based controllers do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable

from kubernetes import client
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("mico_reconciler.lease")


def lease_name(tracking: str) -> str:
    """Replicas of one reconciler instance share a lease; other instances do not block them."""
    return f"mico-reconciler-{hashlib.sha256(tracking.encode()).hexdigest()[:10]}"


def lead(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    on_leading: Callable[[], None],
    lease_seconds: int = 15,
    renew_seconds: int = 10,
    retry_seconds: int = 2,
) -> None:
    """Blocks: waits for the lease, runs `on_leading` in a thread while renewing it."""
    identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    lock = LeaseLock(name, namespace, identity)
    lock.api_instance = client.CoordinationV1Api(api)

    def lost() -> None:
        log.error(
            "lost the leader lease; exiting so a restart re-joins as a follower",
            extra={"lease": f"{namespace}/{name}", "identity": identity},
        )
        os._exit(1)

    log.info("waiting for the leader lease", extra={"lease": f"{namespace}/{name}", "identity": identity})
    config = electionconfig.Config(lock, lease_seconds, renew_seconds, retry_seconds, on_leading, lost)
    leaderelection.LeaderElection(config).run()
