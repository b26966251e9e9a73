"""The config a held-back application last rolled out at, read back from the repository.

A held application keeps exactly its previous objects, so they are rendered again from the
config at the revision recorded when it last rolled out, with the images its builds pinned
then. The store keeps only revision ids; the config itself stays in git, where it was reviewed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from reconciler.plan.builds import BuildState, decide
from reconciler.plan.rollout import Held
from reconciler.render import Settings, builds_needed
from reconciler.source.files import SourceError
from reconciler.source.git import GitSource
from reconciler.spec import Spec, SpecError, load
from reconciler.store import Store

log = logging.getLogger("mico_reconciler.rollout")
#: A revision that could not be read is tried again after this long, not on every pass.
RETRY_SECONDS = 300


class PreviousConfigs:
    def __init__(self, source: GitSource, store: Store, settings: Settings) -> None:
        self.source = source
        self.store = store
        self.settings = settings
        self._specs: dict[str, Spec] = {}
        self._unreadable: dict[str, tuple[float, str]] = {}

    def held(self, waiting: Mapping[str, tuple[Mapping[str, Any], ...]]) -> dict[str, Held]:
        """What each application waiting for a build keeps (see `Held`), the most recently rolled
        out first: of two held applications sharing an instance, the later definition stays."""
        if not waiting:
            return {}
        recorded = self.store.rollouts()
        history = self.store.build_history()
        held = {}
        order = [app for app in recorded if app in waiting] + sorted(waiting.keys() - recorded.keys())
        for app in order:
            builds, revision = waiting[app], recorded.get(app)
            if revision is None:
                held[app] = Held(builds)
                continue
            config = self._config(revision)
            if isinstance(config, str):
                held[app] = Held(builds, revision, problem=config)
                continue
            mine = config.only({app})
            decisions = decide(builds_needed(mine), history, settings=self.settings, now=time.time())
            lost = [d.job for d in decisions if d.state != BuildState.READY]
            if lost:
                problem = (
                    f"no successful build of {', '.join(lost)} at its revision {revision[:12]} is recorded"
                )
                held[app] = Held(builds, revision, problem=problem)
                continue
            images = {d.key: d.image for d in decisions if d.image is not None}
            held[app] = Held(builds, revision, mine, images)
        in_use = {h.revision for h in held.values()}
        self._specs = {r: spec for r, spec in self._specs.items() if r in in_use}
        return held

    def _config(self, revision: str) -> Spec | str:
        """The config at `revision`, or why it cannot be read."""
        if revision in self._specs:
            return self._specs[revision]
        failed = self._unreadable.get(revision)
        if failed is not None and time.monotonic() < failed[0] + RETRY_SECONDS:
            return failed[1]
        try:
            self._specs[revision] = load(self.source.at(revision))
        except (SourceError, SpecError) as err:
            problem = f"its revision {revision[:12]} cannot be read again: {_reason(err)}"
            log.warning("%s; the objects of the applications held at it are kept as they are", problem)
            self._unreadable[revision] = (time.monotonic(), problem)
            return problem
        self._unreadable.pop(revision, None)
        return self._specs[revision]


def _reason(err: SourceError | SpecError) -> str:
    if isinstance(err, SpecError):
        return f"it no longer validates ({err.total} problems)"
    return str(err)
