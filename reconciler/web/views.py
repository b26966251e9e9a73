"""What each page shows, from the history's rows and the config: plain values for the
templates, which only lay them out. Pure."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.plan import topics
from reconciler.render.settings import Settings
from reconciler.spec import Spec
from reconciler.spec.model import Application

NONE = "\N{EN DASH}"
#: A status in words and a sign, so that it never rests on colour alone.
_SIGNS = {
    "Deployed": "✔",
    "Synced": "✔",
    "succeeded": "✔",
    "Pending": "…",
    "running": "…",
    "OutOfSync": "↻",
    "Incomplete": "✘",
    "failed": "✘",
    "invalid": "✘",
    "Unknown": "?",
    "Undeployed": NONE,
}
_TONES = {
    "✔": "good",
    "…": "busy",
    "↻": "warn",
    "✘": "bad",
}


def badge(status: str | None) -> dict[str, str]:
    text = status or "unknown"
    sign = _SIGNS.get(text, "•")
    return {"text": text, "sign": sign, "tone": _TONES.get(sign, "none")}


def when(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def revision(row: Mapping[str, Any]) -> dict[str, str]:
    full = row.get("revision") or ""
    return {
        "full": full,
        "short": full[:8] if full else NONE,
        "summary": row.get("summary") or "",
        "author": row.get("author") or "",
    }


def applications(statuses: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": s["app"],
            "version": s["version"],
            "deployment": badge(s["deployment"]),
            "sync": badge(s["sync"]),
            "revision": revision(s),
            "run": s.get("run_id"),
            "outcome": badge(s.get("outcome")),
            "finished": when(s.get("finished")),
            "totals": s["detail"].get("totals", {}),
        }
        for s in statuses
    ]


def instances(status: Mapping[str, Any], app_key: str) -> list[dict[str, Any]]:
    """Each service instance of the application, shared ones with the others that use them."""
    found = []
    for name, instance in sorted(status["detail"].get("instances", {}).items()):
        users = instance.get("applicationsUsingThisService", [])
        found.append(
            {
                "name": name,
                "service": instance.get("service") or "",
                "version": instance.get("version") or "",
                "shared_with": [u for u in users if u != app_key],
                "requested": instance.get("requestedReplicas"),
                "available": instance.get("availableReplicas"),
                "ready": instance.get("availableReplicas") == instance.get("requestedReplicas"),
                "pods": [
                    {
                        "name": p.get("name", ""),
                        "phase": p.get("phase") or "Unknown",
                        "node": p.get("node") or "",
                        "restarts": p.get("restarts", 0),
                        "ready": p.get("ready"),
                        "waiting": p.get("waiting") or "",
                    }
                    for p in instance.get("pods", [])
                ],
                "interfaces": [
                    {"name": interface, **value}
                    for interface, value in sorted(instance.get("interfaces", {}).items())
                ],
            }
        )
    return found


def application_topics(
    spec: Spec | None, app: Application | None, states: Iterable[Mapping[str, Any]], settings: Settings
) -> list[dict[str, Any]]:
    """The topics the application uses, and what the latest run that reached the broker saw."""
    if spec is None or app is None:
        return []
    seen = {t["name"]: t for t in states}
    return [
        {
            "name": name,
            "users": [u.split(": ", 1)[-1] for u in users],
            "state": seen.get(name, {}).get("state", "not seen"),
            "detail": seen.get(name, {}).get("detail", ""),
        }
        for name, users in sorted(topics.needed(spec.only({app.key}), settings).items())
    ]


def builds(
    app: Application | None,
    history: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    held: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The builds of the application's services built from source: the latest few of each,
    those in progress (a rollout held back for them) first."""
    found: list[dict[str, Any]] = [
        {
            "service": b.get("service", ""),
            "version": b.get("version", ""),
            "job": b.get("job", ""),
            "attempt": None,
            "outcome": badge(b.get("state")),
            "digest": "",
            "reason": b.get("reason") or "",
            "finished": "the rollout waits for it" if b.get("state") == "building" else "holds the rollout",
            "log_tail": _tail(b.get("logTail")),
        }
        for b in held
    ]
    if app is None:
        return found
    shown = {b["job"] for b in found}
    for entry in app.services:  # `history` holds the versions built from source
        for build in history.get((entry.short_name, entry.version), []):
            if build.get("job") in shown:
                continue
            found.append(
                {
                    "service": entry.short_name,
                    "version": entry.version,
                    "job": build.get("job", ""),
                    "attempt": build.get("attempt"),
                    "outcome": badge(build.get("outcome")),
                    "digest": build.get("digest") or "",
                    "reason": build.get("reason") or "",
                    "finished": when(build.get("finished")),
                    "log_tail": _tail(build.get("log_tail")),
                }
            )
    return found


def _tail(log: str | None) -> str:
    return "\n".join((log or "").splitlines()[-20:])


def objects_of(status: Mapping[str, Any]) -> set[str]:
    """The names of an application's Deployments and Services, as its status lists them."""
    names = set()
    for name, instance in status["detail"].get("instances", {}).items():
        names.add(name)
        names |= {i.get("service", "") for i in instance.get("interfaces", {}).values()}
    return names


def run(row: Mapping[str, Any], objects: set[str] | None = None) -> dict[str, Any]:
    """A run; with `objects`, only the actions on those (one application's view of it)."""
    finished = row.get("finished")
    actions = [
        a
        for a in row.get("actions", [])
        if objects is None or (a.get("kind") in ("Deployment", "Service") and a.get("name") in objects)
    ]
    return {
        "id": row["id"],
        "trigger": row["trigger"],
        "revision": revision(row),
        "outcome": badge(row["outcome"]),
        "started": when(row["started"]),
        "duration": f"{finished - row['started']:.2f} s" if finished is not None else NONE,
        "api_requests": row.get("api_requests"),
        "repeats": row.get("repeats", 0),
        "last_seen": when(row.get("last_seen")) if row.get("last_seen") else "",
        "error": row.get("error") or "",
        "actions": actions,
        "drift": [a for a in actions if a.get("drift")],
        "problems": [
            {**p, "where": f"{p['file']}:{p['line']}:{p['column']}"} for p in row.get("problems", [])
        ],
        "topics": row.get("topics", []),
        "builds": row.get("builds", []),
    }
