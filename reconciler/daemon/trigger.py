"""One run at a time; triggers that arrive during a run coalesce into one next run. While a rollout
is Pending, `Rechecks` re-checks it between scheduled runs, backing off while nothing changes."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("mico_reconciler.trigger")


class Coalescer:
    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._wake = threading.Condition()
        self._pending: Counter[str] = Counter()  # by reason: a flood of webhooks is one count
        self._last = ""
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def trigger(self, reason: str) -> None:
        with self._wake:
            self._pending[reason] += 1
            self._last = reason
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                reasons, self._pending = self._pending, Counter()
                last = self._last
            if reasons.total() > 1:
                log.info(
                    "coalesced %d triggers into one run",
                    reasons.total(),
                    extra={"triggers": dict(reasons)},
                )
            try:
                self._run(last)
            except Exception:
                log.exception("run crashed")


class Timer(Protocol):
    def cancel(self) -> None: ...


def start_timer(delay: float, action: Callable[[], None]) -> Timer:
    """`action` in a daemon thread after `delay` seconds, unless cancelled."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


class Rechecks:
    """Follows a Pending rollout between scheduled runs, one re-check timer at a time.

    After every run (`after_run`), whatever triggered it, the timer is re-armed, never added to:
    while something is Pending, the next re-check comes `first` seconds after a run that changed
    something (or the first Pending one), and twice the previous delay after a run that changed
    nothing; once that reaches `longest` (the regular interval) no timer is armed, the scheduled
    runs re-check. Nothing Pending: no timer, and the next Pending run starts at `first` again."""

    def __init__(
        self,
        trigger: Callable[[str], None],
        *,
        first: float,
        longest: float,
        start_timer: Callable[[float, Callable[[], None]], Timer] = start_timer,
    ) -> None:
        self._trigger = trigger
        self._first = first
        self._longest = longest
        self._start_timer = start_timer
        self._lock = threading.Lock()
        self._timer: Timer | None = None
        self._delay: float | None = None  # the last delay chosen while following; None: not following

    def after_run(self, *, pending: bool, changed: bool) -> float | None:
        """Re-arms the timer after a run; returns the delay armed, None when none is."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not pending:
                self._delay = None
                return None
            if changed or self._delay is None:
                self._delay = self._first
            else:
                self._delay = min(self._delay * 2, self._longest)
            if self._delay >= self._longest:
                return None
            self._timer = self._start_timer(self._delay, self._fire)
            return self._delay

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _fire(self) -> None:
        self._trigger("progress")
