"""Kafka topics: which the config needs, and what to do about the broker's. Pure.

Every topic the deployed applications name (service topics by role, connector input and output
topics) plus the error topics (InvalidMessage, DeadLetter, TestMessagesOutput or their
configured names) whenever something talks Kafka. Topics are created, never altered (an
existing topic with other settings is reported) and never deleted unless deletion is enabled:
a topic this reconciler created that the config no longer names is reported as orphaned.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from reconciler.render.settings import Settings
from reconciler.spec import Spec


@dataclass(frozen=True)
class TopicInfo:
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class TopicPlan:
    create: tuple[str, ...]
    unchanged: tuple[str, ...]
    #: Existing topics whose settings differ from the configured ones: reported, not altered.
    mismatched: tuple[tuple[str, str], ...]
    orphaned: tuple[str, ...]
    delete: tuple[str, ...]


def needed(spec: Spec, settings: Settings) -> dict[str, list[str]]:
    """Topic name -> who uses it (`application@version: service ROLE`), for deployed applications."""
    users: dict[str, list[str]] = {}
    errors = (
        ("INVALID_MESSAGE", settings.invalid_message_topic),
        ("DEAD_LETTER", settings.dead_letter_topic),
        ("TEST_MESSAGE_OUTPUT", settings.test_message_output_topic),
    )
    for app in spec.applications:
        if not app.deploy:
            continue
        key = app.key
        uses_kafka = bool(app.kafka_faas_connectors)
        for entry in app.services:
            uses_kafka = uses_kafka or spec.service(entry.short_name, entry.version).kafka_enabled
            for topic in entry.topics:
                users.setdefault(topic.name, []).append(f"{key}: {entry.short_name} {topic.role}")
        for connector in app.kafka_faas_connectors:
            users.setdefault(connector.input_topic, []).append(f"{key}: connector {connector.instance} INPUT")
            if connector.output_topic is not None:
                users.setdefault(connector.output_topic, []).append(
                    f"{key}: connector {connector.instance} OUTPUT"
                )
        if uses_kafka:  # every Kafka client of the application gets the error topics' names
            for role, name in errors:
                users.setdefault(name, []).append(f"{key}: error topic {role}")
    return {name: users[name] for name in sorted(users)}


def plan(
    wanted: Collection[str],
    existing: Mapping[str, TopicInfo],
    managed: Collection[str],
    *,
    partitions: int,
    replication_factor: int,
    delete_enabled: bool = False,
) -> TopicPlan:
    """`managed` are topics this reconciler created before (only those can become orphans)."""
    create, unchanged, mismatched = [], [], []
    for name in sorted(wanted):
        info = existing.get(name)
        if info is None:
            create.append(name)
        elif (info.partitions, info.replication_factor) != (partitions, replication_factor):
            mismatched.append(
                (
                    name,
                    f"has {info.partitions} partitions and replication factor "
                    f"{info.replication_factor}, configured {partitions} and {replication_factor}",
                )
            )
        else:
            unchanged.append(name)
    gone = sorted(name for name in managed if name not in wanted and name in existing)
    return TopicPlan(
        create=tuple(create),
        unchanged=tuple(unchanged),
        mismatched=tuple(mismatched),
        orphaned=() if delete_enabled else tuple(gone),
        delete=tuple(gone) if delete_enabled else (),
    )
