from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler.daemon.service import RunLoop, progressed
from reconciler.daemon.trigger import Coalescer
from reconciler.engine import RunOutcome, RunResult
from reconciler.plan.health import AppStatus, DeploymentStatus, SyncStatus


def test_triggers_during_a_run_coalesce_into_one_next_run() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def run(reason: str) -> None:
        runs.append(reason)
        started.set()
        release.wait(5)

    coalescer = Coalescer(run)
    coalescer.start()
    coalescer.trigger("first")
    assert started.wait(5)
    for reason in ("webhook:push", "schedule", "webhook:push"):
        coalescer.trigger(reason)
    started.clear()
    release.set()
    assert started.wait(5)
    coalescer.stop()
    assert runs == ["first", "webhook:push"]


# -- re-checks of a Pending rollout --------------------------------------------------------------


class FakeTimer:
    def __init__(self, clock: FakeClock, delay: float, action: Callable[[], None]) -> None:
        self.due = clock.now + delay
        self.delay = delay
        self.action = action
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Timers that fire when the test says: `advance` moves to the one armed and fires it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []
        self.most_armed = 0

    def start_timer(self, delay: float, action: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self, delay, action)
        self.timers.append(timer)
        self.most_armed = max(self.most_armed, len(self.armed()))
        return timer

    def armed(self) -> list[FakeTimer]:
        return [t for t in self.timers if not (t.cancelled or t.fired)]

    def advance(self) -> None:
        (timer,) = self.armed()
        self.now = timer.due
        timer.fired = True
        timer.action()


class FakeEngine:
    """Runs that find what `state` says; `finished` hands each run's re-check delay to the test."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"revision": "a" * 40, "pending": True, "available": 0}
        self.triggers: list[str] = []
        self.finished: queue.Queue[float | None] = queue.Queue()

    def run(self, trigger: str) -> RunResult:
        self.triggers.append(trigger)
        deployment = DeploymentStatus.PENDING if self.state["pending"] else DeploymentStatus.DEPLOYED
        detail = {"totals": {"requestedReplicas": 2, "availableReplicas": self.state["available"]}}
        return RunResult(
            run_id=len(self.triggers),
            trigger=trigger,
            outcome=RunOutcome.SUCCEEDED,
            revision=self.state["revision"],
            statuses=[AppStatus("app", "v1", deployment, SyncStatus.SYNCED, detail)],
        )


#: The loop, its engine, the fake clock, and `next_delay` (see `clock_loop`).
Driven = tuple[RunLoop, FakeEngine, FakeClock, Callable[..., Any]]


@pytest.fixture
def clock_loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[Driven]:
    clock, engine = FakeClock(), FakeEngine()
    loop = RunLoop(engine.run, interval=60, progress_interval=5, start_timer=clock.start_timer)
    after_run = loop.rechecks.after_run

    def reporting(*, pending: bool, changed: bool) -> float | None:
        delay = after_run(pending=pending, changed=changed)
        engine.finished.put(delay)
        return delay

    monkeypatch.setattr(loop.rechecks, "after_run", reporting)

    def next_delay(trigger: Callable[[], None]) -> float | None:
        """Triggers a run (through the real Coalescer) and returns the re-check it armed."""
        trigger()
        delay = engine.finished.get(timeout=5)
        assert len(clock.armed()) == (0 if delay is None else 1)
        if delay is not None:
            assert clock.armed()[0].delay == delay
        return delay

    loop.start()
    yield loop, engine, clock, next_delay
    loop.stop()


def test_a_pending_rollout_is_re_checked_after_5_s_then_less_often_while_nothing_changes(
    clock_loop: Driven,
) -> None:
    loop, engine, clock, next_delay = clock_loop
    assert next_delay(lambda: loop.trigger("startup")) == 5
    assert [next_delay(clock.advance) for _ in range(4)] == [10, 20, 40, None]
    assert clock.now == 5 + 10 + 20 + 40, "the next re-check is the scheduled run's, at 60 s"
    assert next_delay(lambda: loop.trigger("schedule")) is None, "still nothing changed"
    assert engine.triggers == ["startup"] + ["progress"] * 4 + ["schedule"]
    engine.state["available"] = 1  # a pod became ready: follow closely again
    assert next_delay(lambda: loop.trigger("schedule")) == 5
    assert next_delay(clock.advance) == 10
    engine.state["revision"] = "b" * 40  # a new commit
    assert next_delay(lambda: loop.trigger("webhook:github")) == 5
    assert next_delay(clock.advance) == 10
    engine.state["pending"] = False  # settled: no re-check
    assert next_delay(clock.advance) is None
    engine.state["pending"] = True  # a new rollout starts at 5 s again
    assert next_delay(lambda: loop.trigger("webhook:github")) == 5
    assert clock.most_armed == 1


def test_runs_between_re_checks_re_arm_the_one_timer_instead_of_adding_timers(
    clock_loop: Driven,
) -> None:
    loop, _, clock, next_delay = clock_loop
    assert next_delay(lambda: loop.trigger("startup")) == 5
    delays = [next_delay(lambda: loop.trigger("webhook:generic")) for _ in range(5)]
    assert delays == [10, 20, 40, None, None]
    assert clock.most_armed == 1
    assert [t.delay for t in clock.timers] == [5, 10, 20, 40]
    assert all(t.cancelled and not t.fired for t in clock.timers), "each run re-armed the one before"


def test_with_real_timers_a_long_pending_state_runs_a_few_re_checks_not_a_flood() -> None:
    """Real threads and timers, 100 times faster: --interval 0.6 s, re-checks from 0.05 s. Six
    quick triggers used to leave six timers re-arming themselves every 0.05 s (about 120 runs
    per second); now there is one, backing off: 0.05, 0.1, 0.2, 0.4 s after the last run."""
    engine = FakeEngine()
    loop = RunLoop(engine.run, interval=0.6, progress_interval=0.05)
    loop.start()
    try:
        for trigger in ("startup", *["webhook:generic"] * 5):
            loop.trigger(trigger)
            time.sleep(0.01)
        time.sleep(1.5)
    finally:
        loop.stop()
    assert len(engine.triggers) <= 6 + 4, engine.triggers


def test_a_run_that_applied_built_or_changed_outcome_progressed() -> None:
    engine = FakeEngine()
    before = engine.run("schedule")
    same = engine.run("progress")
    assert progressed(before, None)
    assert not progressed(same, before)
    for change in (
        {"outcome": RunOutcome.FAILED},
        {"revision": "b" * 40},
        {"executed": [object()]},
        {"builds": [object()]},
        {"statuses": []},
    ):
        changed = RunResult(**{**same.__dict__, **change})
        assert progressed(changed, before), change


def test_a_backoff_retry_is_one_timer_re_armed_by_every_run() -> None:
    clock, done = FakeClock(), queue.Queue[None]()

    def run(trigger: str) -> RunResult:
        return RunResult(run_id=1, trigger=trigger, outcome=RunOutcome.FAILED, retry_at=time.time() + 30)

    loop = RunLoop(run, interval=60, progress_interval=5, start_timer=clock.start_timer)
    after_run = loop.rechecks.after_run

    def reporting(*, pending: bool, changed: bool) -> float | None:
        delay = after_run(pending=pending, changed=changed)
        done.put(None)
        return delay

    loop.rechecks.after_run = reporting  # type: ignore[method-assign]
    loop.start()
    try:
        for _ in range(5):
            loop.trigger("webhook:generic")
            done.get(timeout=5)
    finally:
        loop.stop()
    assert len(clock.timers) == 5
    assert len(clock.armed()) == 0, "stopping cancels it"
    assert sum(not t.cancelled for t in clock.timers[:-1]) == 0, "each run replaced the retry before"
    assert all(25 < t.delay <= 30 for t in clock.timers)
