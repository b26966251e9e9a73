"""Which source builds are ready, which must start and which wait out a backoff. Pure.

A service version built from source is ready once a build of exactly its source (git URL,
revision, dockerfile, context: the fingerprint) succeeded; its image is then pinned by the
digest that build reported. A changed source for an already built version rebuilds (versions
should be immutable, so this is also a warning). After a failure the next attempt waits
base * 2^(failures - 1) seconds, capped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from reconciler.render.builds import source_fingerprint
from reconciler.render.settings import Settings
from reconciler.spec.model import Service
from reconciler.spec.names import build_job_name

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BuildState(StrEnum):
    READY = "ready"
    START = "start"
    BACKOFF = "backoff"


@dataclass(frozen=True)
class BuildDecision:
    service: str
    version: str
    fingerprint: str
    job: str
    state: BuildState
    reason: str
    attempt: int = 0
    image: str | None = None
    retry_at: float | None = None
    #: The last failed build of this source (reason, log tail), for status.
    last_failure: Mapping[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.version)


def pinned_image(settings: Settings, service: str, digest: str) -> str:
    return f"{settings.registry}/{service}@{digest}"


def decide(
    services: Iterable[Service],
    history: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    *,
    settings: Settings,
    now: float,
    backoff_seconds: float = 30,
    backoff_cap_seconds: float = 1800,
) -> list[BuildDecision]:
    """`history` holds each version's finished builds, newest first."""
    decisions = []
    for service in services:
        assert service.source is not None
        fingerprint = source_fingerprint(service.source, service.version)
        records = history.get((service.short_name, service.version), [])
        same = [r for r in records if r["fingerprint"] == fingerprint]
        template = BuildDecision(
            service.short_name,
            service.version,
            fingerprint,
            build_job_name(service.short_name, service.version),
            BuildState.START,
            "",
        )
        success = next(
            (r for r in same if r["outcome"] == "succeeded" and DIGEST.match(r["digest"] or "")), None
        )
        if success is not None:
            decisions.append(
                replace(
                    template,
                    state=BuildState.READY,
                    reason="built",
                    image=pinned_image(settings, service.short_name, success["digest"]),
                )
            )
            continue
        failures = [r for r in same if r["outcome"] == "failed"]
        last_failure = failures[0] if failures else None
        if last_failure is not None:
            wait = min(backoff_cap_seconds, backoff_seconds * 2 ** (len(failures) - 1))
            retry_at = float(last_failure["finished"] or now) + wait
            if now < retry_at:
                decisions.append(
                    replace(
                        template,
                        state=BuildState.BACKOFF,
                        reason=f"retry after {wait:.0f}s",
                        retry_at=retry_at,
                        last_failure=last_failure,
                    )
                )
                continue
            reason = f"retry {len(failures)} after: {last_failure['reason']}"
        elif any(r["outcome"] == "succeeded" for r in records):
            reason = (
                "the source of an already built version changed: rebuilding (versions should be immutable)"
            )
        else:
            reason = "first build of this source"
        decisions.append(
            replace(
                template,
                reason=reason,
                attempt=len(same) + 1,
                last_failure=last_failure,
            )
        )
    return decisions
