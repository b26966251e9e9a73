"""Every Kubernetes API permission the reconciler needs, in one place, and why.

The Helm chart's Roles are generated from `RULES` (`make chart-rbac` writes
`charts/mico-reconciler/files/rbac-rules.yaml`; a unit test keeps the two equal), and the
integration tests record the request attributes of every API call the code makes and fail on
one these rules do not grant: a new verb in the code cannot reach a cluster ungranted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, urlsplit


class Scope(StrEnum):
    """Which namespace a rule is granted in."""

    WORKLOAD = "workload"  # --namespace: the applications' Deployments and Services
    BUILD = "build"  # --build-namespace: Kaniko Jobs
    LEASE = "lease"  # --lease-namespace: leader election


@dataclass(frozen=True)
class Rule:
    scope: Scope
    api_group: str
    resource: str  # plural, or plural/subresource
    verbs: tuple[str, ...]
    why: str
    #: Only when topics are managed as Strimzi KafkaTopic resources (`--topics strimzi`).
    strimzi_only: bool = False
    #: Limited to the object named by `--lease-name` (RBAC cannot limit `create` by name).
    lease_only: bool = False


_WRITE = ("create", "patch", "delete")  # server-side apply is a PATCH that may create
RULES: tuple[Rule, ...] = (
    Rule(
        Scope.WORKLOAD,
        "apps",
        "deployments",
        ("list", "watch", *_WRITE),
        "observe by label, server-side apply and prune the applications' Deployments",
    ),
    Rule(
        Scope.WORKLOAD,
        "",
        "services",
        ("list", "watch", *_WRITE),
        "observe by label, server-side apply and prune the applications' Services",
    ),
    Rule(
        Scope.WORKLOAD, "", "pods", ("list", "watch"), "status: each instance's pods, phase, node, restarts"
    ),
    Rule(
        Scope.WORKLOAD,
        "kafka.strimzi.io",
        "kafkatopics",
        ("list", "watch", *_WRITE),
        "topics as KafkaTopic resources",
        strimzi_only=True,
    ),
    Rule(
        Scope.BUILD,
        "batch",
        "jobs",
        ("list", "watch", "create", "delete"),
        "run and follow Kaniko build Jobs",
    ),
    Rule(
        Scope.BUILD, "", "pods", ("list",), "a build pod's termination message: the digest, or why it failed"
    ),
    Rule(Scope.BUILD, "", "pods/log", ("get",), "the last lines of a failed build's log"),
    Rule(
        Scope.LEASE,
        "coordination.k8s.io",
        "leases",
        ("get", "update"),
        "leader election: read, renew and release its own Lease",
        lease_only=True,
    ),
    Rule(
        Scope.LEASE,
        "coordination.k8s.io",
        "leases",
        ("create",),
        "leader election: create its Lease the first time",
    ),
)


@dataclass(frozen=True, order=True)
class Request:
    """A request's RBAC attributes, as the apiserver resolves them."""

    verb: str
    api_group: str
    resource: str
    namespace: str  # "" for a cluster-scoped request


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def attributes(method: str, url: str) -> Request | None:
    """The RBAC attributes of an API request (None for a non-resource URL such as /version)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"] and len(segments) >= 2:
        group, rest = "", segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 3:
        group, rest = segments[1], segments[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource, named = rest[0], len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        watching = parse_qs(parts.query).get("watch", ["false"])[0] in ("true", "1")
        verb = "watch" if watching else ("get" if named else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return Request(verb, group, resource, namespace)


def granted(request: Request, namespaces: dict[Scope, str], *, strimzi: bool) -> bool:
    """Whether `RULES`, granted in those namespaces, allow the request (names are not checked)."""
    return any(
        rule.api_group == request.api_group
        and rule.resource == request.resource
        and request.verb in rule.verbs
        and namespaces[rule.scope] == request.namespace
        and (strimzi or not rule.strimzi_only)
        for rule in RULES
    )


def chart_rules() -> dict[str, list[dict[str, object]]]:
    """`RULES` as the Helm chart reads them (charts/mico-reconciler/files/rbac-rules.yaml)."""
    by_scope: dict[str, list[dict[str, object]]] = {scope.value: [] for scope in Scope}
    for rule in RULES:
        entry: dict[str, object] = {
            "apiGroups": [rule.api_group],
            "resources": [rule.resource],
            "verbs": list(rule.verbs),
            "why": rule.why,
        }
        if rule.strimzi_only:
            entry["strimziOnly"] = True
        if rule.lease_only:
            entry["leaseOnly"] = True
        by_scope[rule.scope.value].append(entry)
    return by_scope
