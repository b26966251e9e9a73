"""The connector's loop: read a batch of input records, turn each into its outputs (through the
function when one is named), write them all with an idempotent producer (acks=all), and only
when every output of a record is acknowledged commit past it: at least once, nothing lost.

A record whose function cannot be reached now (refused, timed out, 502/503/504), or whose
outputs the broker cannot take now, is not skipped: its partition is paused and sought back to
it, and it is tried again after a backoff while the other partitions go on. An output whose
topic cannot be written at all (unknown, not authorized, too large) goes to the dead-letter
topic instead; an event that cannot be handled (malformed, expired, refused by its function,
with nowhere to go) goes to the invalid-message topic, with the source event as its data."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from faas_connector import events
from faas_connector.config import Config
from faas_connector.events import Event, InvalidEventError, Output
from faas_connector.function import Gateway
from faas_connector.metrics import Metrics

log = logging.getLogger("mico_connector")

BATCH = 500
#: A batch stops taking records after this long (slow function calls), well within
#: max.poll.interval.ms; the records not yet taken are read again in the next.
BATCH_SECONDS = 30.0
#: An error event larger than this carries an excerpt of its source instead of all of it: it
#: must fit into a record (the broker's default limit is 1 MB).
MAX_ERROR_BYTES = 512 * 1024
#: Delivery errors that say the topic itself cannot take the record: retrying will not help.
_UNWRITABLE = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
    }
)

#: Commit errors that mean the partitions were taken away from this consumer by a rebalance.
_LOST_PARTITIONS = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID})

Partition = tuple[str, int]


def consumer_settings(config: Config) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "logger": logging.getLogger("rdkafka.consumer"),  # librdkafka's lines as structured logs
        "group.id": config.group_id,
        "enable.auto.commit": False,  # offsets are committed once a record's outputs are written
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 10000,  # a crashed replica's partitions move on within seconds
        "max.poll.interval.ms": 300000,
    }


def producer_settings(config: Config) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "logger": logging.getLogger("rdkafka.producer"),
        "enable.idempotence": True,  # acks=all, no duplicates or reordering from retries
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 120000,  # a broker restart is waited out, not turned into a loss
        "topic.metadata.propagation.max.ms": 5000,  # an unknown topic is known as such soon
    }


@dataclass
class _Record:
    """One input record and its outputs; committed past once every output is acknowledged."""

    partition: Partition
    offset: int
    outputs: list[Output]
    #: output index -> why it could not be written (the topic refuses it)
    unwritable: dict[int, str] = field(default_factory=dict)
    #: why an output could not be written now (the broker is unavailable)
    unsent: str | None = None


class Connector:
    def __init__(
        self,
        config: Config,
        *,
        consumer: Consumer,
        producer: Producer,
        gateway: Gateway,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config, self.consumer, self.producer, self.gateway = config, consumer, producer, gateway
        self.metrics, self.clock, self.new_id = metrics, clock, new_id
        #: paused partitions (sought back to the record to try again) and when they go on
        self._paused: dict[Partition, float] = {}
        #: failed tries of the record each partition waits on
        self._tries: dict[Partition, int] = {}
        #: offsets whose commit the coordinator has not taken yet
        self._uncommitted: dict[Partition, int] = {}
        #: the partitions this consumer owns now; a record of another is left to its owner
        self._assigned: set[Partition] = set()
        self._fatal: KafkaError | None = None
        self._last_lag = 0.0

    def run(self, stopping: Callable[[], bool]) -> None:
        self.consumer.subscribe(
            [self.config.input_topic],
            on_assign=self._assigned_now,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        try:
            while not stopping():
                self._resume_due()
                records = self._next_batch()
                if records:
                    self._handle(records)
                else:
                    self._commit_pending()
                if time.monotonic() - self._last_lag > 5:
                    self._observe_lag()
        finally:
            self.producer.flush(30)
            self._commit_pending()
            self.consumer.close()  # leaves the group: the partitions move on at once

    # -- one batch ---------------------------------------------------------------------------------

    def _next_batch(self) -> list[Any]:
        """The first record as soon as it arrives, then whatever is already fetched behind it
        (a batch waits for nothing: at a low rate each record goes on alone)."""
        first = self.consumer.poll(0.1)
        if first is None:
            return []
        return [first, *self.consumer.consume(num_messages=BATCH - 1, timeout=0)]

    def _handle(self, records: list[Any]) -> None:
        handled: list[_Record] = []
        halted: set[Partition] = set()
        deadline = time.monotonic() + BATCH_SECONDS
        for record in records:
            if record.error():
                self._consumer_error(record.error())
                continue
            partition = (record.topic(), record.partition())
            if partition in halted or partition in self._paused or partition not in self._assigned:
                continue  # after a record tried again later, its successors wait too
            if time.monotonic() > deadline:  # the rest of this partition is read again, at once
                halted.add(partition)
                self._seek(partition, record.offset())
                continue
            self.metrics.events_in.inc()
            outputs = self._outputs(record)
            if outputs is None:
                halted.add(partition)
                self._pause(partition, record.offset())
                continue
            item = _Record(partition, record.offset(), outputs)
            for index, output in enumerate(outputs):
                self._produce(output, item, index)
            handled.append(item)
        self.producer.flush()
        self._dead_letters(handled)
        if self._fatal is not None:
            raise KafkaException(self._fatal)
        self._commit(handled)

    def _outputs(self, record: Any) -> list[Output] | None:
        """The records to write for one input record; None: try it again later."""
        now = self.clock()
        raw = record.value()
        try:
            event = events.parse(raw)
        except InvalidEventError as err:
            return [self._error(raw, str(err), "malformed", now)]
        if events.expired(event, now):
            return [self._error(event, "the event has already expired", "expired", now)]
        event.setdefault("id", self.new_id())  # one id for all of its copies, and their correlation
        results = [event]
        function = self.config.function
        if function:
            started = time.perf_counter()
            answer = self.gateway.call(function, events.with_hop(event, "faas-function", function, now))
            self.metrics.function_seconds.observe(time.perf_counter() - started)
            if answer.transient:
                log.warning(
                    "function %s not reachable now; the record is tried again",
                    function,
                    extra={"reason": answer.error, "offset": record.offset()},
                )
                self.metrics.retries.inc()
                return None
            if answer.error is not None:
                return [self._error(event, answer.error, "function_error", now)]
            results = answer.events  # the function's events, the route it was called with included
        outputs: list[Output] = []
        for result in results:
            try:
                outputs += events.routed(
                    event,
                    result,
                    output_topic=self.config.output_topic,
                    test_topic=self.config.test_message_output_topic,
                    now=now,
                    new_id=self.new_id,
                )
            except InvalidEventError as err:  # the result is what is lost if it is not the data
                unroutable = event if result is event else events.linked(event, result, self.new_id)
                outputs.append(self._error(unroutable, str(err), "unroutable", now))
        return outputs

    def _error(self, source: Event | bytes | None, message: str, reason: str, now: datetime) -> Output:
        self.metrics.errored.labels(reason).inc()
        return Output(
            self.config.invalid_message_topic, None, self._error_event(source, message, reason, now)
        )

    def _error_event(self, source: Event | bytes | None, message: str, reason: str, now: datetime) -> Event:
        """The error event, with an excerpt of its source when all of it would not fit."""
        event = events.error_event(
            source, message, trace=reason, origin=self.config.origin, now=now, new_id=self.new_id
        )
        size = len(events.dumps(event))
        if size > MAX_ERROR_BYTES:
            text = events.dumps(source) if isinstance(source, dict) else source or b""
            event["data"] = {
                "truncated": True,
                "bytes": size,
                "excerpt": text[:1000].decode("utf-8", errors="replace"),
            }
        return event

    def _produce(self, output: Output, item: _Record, index: int) -> None:
        def delivered(err: KafkaError | None, _message: Any) -> None:
            if err is None:
                self.metrics.events_out.labels(self._destination(output.topic)).inc()
            elif err.fatal():
                self._fatal = err
                item.unsent = err.str()
            elif err.code() in _UNWRITABLE:
                item.unwritable[index] = err.str()
            else:
                item.unsent = err.str()

        while True:
            try:
                self.producer.produce(output.topic, output.value(), key=output.key, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)
            except KafkaException as err:  # refused before sending: too large, a bad topic name
                error = err.args[0] if err.args else None
                item.unwritable[index] = error.str() if isinstance(error, KafkaError) else str(err)
                return

    def _dead_letters(self, handled: list[_Record]) -> None:
        """Each output its topic refused goes to the dead-letter topic, wrapped in an error
        event that says where it was meant to go."""
        now = self.clock()
        retried = False
        for item in handled:
            refused, item.unwritable = sorted(item.unwritable.items()), {}
            for index, reason in refused:
                output = item.outputs[index]
                self.metrics.errored.labels("undeliverable").inc()
                message = f"could not be written to topic {output.topic}: {reason}"
                event = self._error_event(output.event, message, "undeliverable", now)
                self._produce(Output(self.config.dead_letter_topic, output.key, event), item, index)
                retried = True
        if retried:
            self.producer.flush()
            for item in handled:
                if item.unwritable:  # the dead-letter topic refuses too: nothing left but later
                    item.unsent = "the dead-letter topic refused: " + "; ".join(item.unwritable.values())

    def _commit(self, handled: list[_Record]) -> None:
        """Past every record whose outputs were all written; a record not yet written, and those
        after it in its partition, are read again after a pause."""
        offsets: dict[Partition, int] = {}
        stopped: set[Partition] = set()
        for item in handled:
            if item.partition in stopped:
                continue
            if item.unsent is not None:
                log.warning(
                    "outputs not written; the record is tried again",
                    extra={"reason": item.unsent, "offset": item.offset},
                )
                stopped.add(item.partition)
                self._pause(item.partition, item.offset)
                continue
            offsets[item.partition] = item.offset + 1
            self._tries.pop(item.partition, None)
        self._uncommitted.update(offsets)
        self._commit_pending()

    def _commit_pending(self) -> None:
        """Commits are cumulative: one the coordinator could not take now (it moved, restarted)
        is sent again with the next; the records stay written either way, and a crash before it
        lands only means they are read again."""
        for partition in set(self._uncommitted) - self._assigned:  # handed over: not ours to commit
            del self._uncommitted[partition]
        if not self._uncommitted:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as err:
            error = err.args[0] if err.args else None
            if not isinstance(error, KafkaError) or error.fatal():
                raise
            log.warning("commit not taken now; sent again with the next", extra={"reason": error.str()})
            if error.code() in _LOST_PARTITIONS:  # no longer ours: their new owner reads them again
                self._uncommitted.clear()
            return
        self._uncommitted.clear()

    # -- pausing -----------------------------------------------------------------------------------

    def _pause(self, partition: Partition, offset: int) -> None:
        """Backoff doubling from 0.2 s with each failed try of the same record, up to the
        configured maximum; a record written ends it."""
        tries = self._tries[partition] = self._tries.get(partition, 0) + 1
        delay = min(self.config.retry_max_seconds, 0.2 * 2 ** min(tries - 1, 16))
        self._paused[partition] = time.monotonic() + delay
        self.consumer.pause([TopicPartition(*partition)])
        self._seek(partition, offset)

    def _seek(self, partition: Partition, offset: int) -> None:
        try:
            self.consumer.seek(TopicPartition(partition[0], partition[1], offset))
        except KafkaException as err:  # no longer ours: its new owner reads from the commit
            log.warning("seek refused", extra={"partition": partition[1], "reason": str(err)})

    def _resume_due(self) -> None:
        now = time.monotonic()
        for partition, due in list(self._paused.items()):
            if due <= now:
                self._paused.pop(partition)
                self.consumer.resume([TopicPartition(*partition)])

    def _assigned_now(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}

    def _lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """Taken away without a clean handover: nothing of theirs may be committed any more."""
        for tp in partitions:
            self._uncommitted.pop((tp.topic, tp.partition), None)
        self._revoked(_consumer, partitions)

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._commit_pending()  # still ours during the callback
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._uncommitted.pop((tp.topic, tp.partition), None)
            self._paused.pop((tp.topic, tp.partition), None)
            self._tries.pop((tp.topic, tp.partition), None)

    # -- observing ---------------------------------------------------------------------------------

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer: %s", error.str())

    def _observe_lag(self) -> None:
        self._last_lag = time.monotonic()
        for tp in self.consumer.position(self.consumer.assignment()):
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - max(tp.offset, low)))

    def _destination(self, topic: str) -> str:
        config = self.config
        kinds = {
            config.invalid_message_topic: "invalid_message",
            config.dead_letter_topic: "dead_letter",
            config.test_message_output_topic: "test_message",
        }
        return kinds.get(topic, "topic")
