"""Fencing: a replica may write only while its last renewal is recent (monotonic clock)."""

from __future__ import annotations

import time

from kubernetes import client

from reconciler.cluster.lease import Leadership


def test_may_write_only_within_the_renew_deadline_of_the_last_renewal() -> None:
    leadership = Leadership(client.ApiClient(), namespace="ns", name="lease", renew_deadline_seconds=10)
    assert not leadership.may_write(), "never renewed"
    leadership._leading.set()
    leadership._renewed(time.monotonic())
    assert leadership.may_write()
    leadership._renewed(time.monotonic() - 11)  # as a process frozen (SIGSTOP) for 11 s sees it
    assert not leadership.may_write()
    leadership._renewed(time.monotonic())
    leadership._stopping.set()
    assert not leadership.may_write(), "a stopping leader hands over; it writes no more"
