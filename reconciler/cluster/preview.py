"""The reads behind `diff --live`: the managed objects as they are, and, for each object a
config would create or change, what the apiserver would store (a server-side apply with
dryRun=All: validated, defaulted and admitted like the write, never stored). It writes nothing;
a dry run is authorized like the write it stands for, so it needs the patch permission.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from reconciler.cluster import resources
from reconciler.engine import SELECTOR, Options, observed
from reconciler.plan import Action, ObjectRef, Verb, compute, stamp, topics
from reconciler.render import builds_needed, render
from reconciler.render.labels import MANAGED_BY_LABEL
from reconciler.render.topics import kafka_topics
from reconciler.review.live import LiveChange, LiveChangeKind, LiveReview, field_changes
from reconciler.spec import Spec
from reconciler.spec.names import label_safe


def preview(api: client.ApiClient, options: Options, spec: Spec, *, head: str) -> LiveReview:
    live = {
        ObjectRef.of(obj): obj
        for resource, namespace in observed(options)
        for obj in resources.list_objects(api, resource, namespace, SELECTOR)
    }
    built, builds = _images(spec, live.values())
    objects = render(spec, options.settings, built=built)
    if options.topics == "strimzi":  # as the daemon: a KafkaTopic per topic the config uses
        objects += kafka_topics(
            topics.needed(spec, options.settings),
            namespace=options.settings.namespace,
            cluster=options.strimzi_cluster,
            partitions=options.topic_partitions,
            replicas=options.topic_replication_factor,
        )
    desired = stamp(objects, options.tracking)
    plan = compute(
        desired,
        live,
        tracking=options.tracking,
        last_applied={},
        self_heal=False,  # drift is reported as drift, and not also as a change
        max_prune_fraction=options.max_prune_fraction,
        force_prune=options.force_prune,
        # as the daemon: a KafkaTopic's deletion would delete the topic's data
        retain=set() if options.topic_deletion else {ref for ref in live if ref.kind == "KafkaTopic"},
    )
    changes = [_dry_run(api, options, action, live) for action in plan.actions if action.verb != Verb.DELETE]
    changes += [_dry_run(api, options, action, live, kind="drift") for action in plan.drift]
    changes += [_removal(action, "prune") for action in plan.actions if action.verb == Verb.DELETE]
    changes += [_removal(action, "prune refused") for action in plan.prune_refused]
    return LiveReview(
        head=head,
        namespace=options.settings.namespace,
        changes=tuple(changes),
        foreign=tuple(str(ref) for ref in plan.foreign),
        builds=tuple(builds),
        topics=tuple(sorted(_topics(desired) - _topics(live.values()))),
    )


def _dry_run(
    api: client.ApiClient,
    options: Options,
    action: Action,
    live: dict[ObjectRef, Any],
    kind: LiveChangeKind | None = None,
) -> LiveChange:
    assert action.manifest is not None
    stored = resources.apply(
        api, action.manifest, field_manager=options.field_manager, force=options.force_conflicts, dry_run=True
    )
    ref = action.ref
    change: LiveChangeKind = "create" if action.verb == Verb.CREATE else "update"
    if kind is not None:
        change = kind
    return LiveChange(
        ref.kind,
        ref.namespace,
        ref.name,
        change,
        action.reason,
        field_changes(live.get(ref), stored),
    )


def _removal(action: Action, kind: LiveChangeKind) -> LiveChange:
    ref = action.ref
    return LiveChange(ref.kind, ref.namespace, ref.name, kind, action.reason)


def _images(spec: Spec, live: Any) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The image each source-built service version runs in the cluster (its build done), and
    the builds the config would start (no Deployment runs that version yet)."""
    running = {}
    for obj in live:
        labels = obj["metadata"].get("labels") or {}
        if obj["kind"] == "Deployment" and labels.get(MANAGED_BY_LABEL):
            containers = obj["spec"]["template"]["spec"].get("containers") or [{}]
            running[(labels.get("ust.mico/name"), labels.get("ust.mico/version"))] = containers[0].get(
                "image"
            )
    built, builds = {}, []
    for service in builds_needed(spec):
        image = running.get((service.short_name, label_safe(service.version)))
        if image:
            built[(service.short_name, service.version)] = image
        else:
            builds.append(f"{service.short_name} {service.version}")
    return built, builds


def _topics(objects: Any) -> set[str]:
    """The Kafka topics Deployments are told to use (their KAFKA_TOPIC_* variables)."""
    return {
        env["value"]
        for obj in objects
        if obj["kind"] == "Deployment"
        for container in obj["spec"]["template"]["spec"].get("containers", [])
        for env in container.get("env") or []
        if env.get("name", "").startswith("KAFKA_TOPIC_") and env.get("value")
    }
