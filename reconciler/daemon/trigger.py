"""One run at a time; triggers that arrive during a run coalesce into one next run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("mico_reconciler.trigger")


class Coalescer:
    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._wake = threading.Condition()
        self._pending: list[str] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def trigger(self, reason: str) -> None:
        with self._wake:
            self._pending.append(reason)
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
                reasons, self._pending = self._pending, []
            if len(reasons) > 1:
                log.info("coalesced %d triggers into one run", len(reasons), extra={"triggers": reasons})
            try:
                self._run(reasons[-1])
            except Exception:
                log.exception("run crashed")
