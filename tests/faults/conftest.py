"""Fault tests break the shared platform on purpose (stop the apiserver, git, ...), so they run
in the same session as the integration tests, after them, and bring every part back up.

Each case measures its time to recover with the `recovery` fixture; the session's summary lists
them under "fault recovery", the figures the README's Reliability table gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    config_repo,
    git_repo,
    kafka_prefix,
    kube,
    make_engine,
    namespace,
    platform,
    start_daemon,
)

RECOVERIES: list[tuple[str, str, float]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def recovery(request: pytest.FixtureRequest) -> Callable[[str, float], None]:
    """`recovery(what, seconds)`: a measured time, e.g. from the fault's end to convergence."""

    def record(what: str, seconds: float) -> None:
        RECOVERIES.append((request.node.name, what, seconds))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECOVERIES:
        return
    terminalreporter.section("fault recovery")
    for test, what, seconds in RECOVERIES:
        terminalreporter.write_line(f"{seconds:7.2f} s  {what}  ({test})")
