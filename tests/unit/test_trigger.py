import threading

from reconciler.daemon.trigger import Coalescer


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
