"""Fault tests break the shared platform on purpose (stop the apiserver, git, ...), so they run
in the same session as the integration tests, after them, and bring every part back up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    config_repo,
    git_repo,
    kube,
    make_engine,
    namespace,
    platform,
)
from tests.integration.test_daemon import start_daemon  # noqa: F401 - a fixture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)
