"""The connector's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_in = Counter(
            "mico_connector_events_received", "Input records read", registry=self.registry
        )
        self.events_out = Counter(
            "mico_connector_events_sent",
            "Records written and acknowledged, by destination: topic (output or routing slip), "
            "invalid_message, dead_letter or test_message",
            ["destination"],
            registry=self.registry,
        )
        self.errored = Counter(
            "mico_connector_events_errored",
            "Events that became error events, by reason: malformed, expired, function_error, "
            "unroutable (no destination), undeliverable (to the dead-letter topic)",
            ["reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "mico_connector_function_retries",
            "Records put back because the function could not be reached",
            registry=self.registry,
        )
        self.function_seconds = Histogram(
            "mico_connector_function_duration_seconds",
            "Time of a function call through the gateway",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.lag = Gauge(
            "mico_connector_consumer_lag",
            "Records of the input topic not yet read, by partition",
            ["partition"],
            registry=self.registry,
        )
