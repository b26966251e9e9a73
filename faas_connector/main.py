"""`mico-kafka-faas-connector`: the process. Configured by the environment the reconciler
renders (see `faas_connector.config`); serves /metrics and /healthz; SIGTERM finishes the batch
in hand, commits it and leaves the consumer group."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from faas_connector.config import ConfigError, from_environment
from reconciler import __version__, logs
from reconciler.daemon.http import Limits, Request, Response, Server

log = logging.getLogger("mico_connector")

#: The one-line answers of the HTTP port beside /metrics.
_PATHS = "/metrics, /healthz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mico-kafka-faas-connector",
        description=__doc__,
        epilog="Environment: KAFKA_BOOTSTRAP_SERVERS (required), KAFKA_GROUP_ID, KAFKA_TOPIC_INPUT, "
        "KAFKA_TOPIC_OUTPUT, KAFKA_TOPIC_INVALID_MESSAGE, KAFKA_TOPIC_DEAD_LETTER, "
        "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT, OPENFAAS_GATEWAY, OPENFAAS_FUNCTION_NAME; "
        "CONNECTOR_FUNCTION_TIMEOUT_SECONDS (10), CONNECTOR_RETRY_MAX_SECONDS (30), "
        "CONNECTOR_HTTP_PORT (8080).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)
    try:
        config = from_environment(os.environ)
    except ConfigError as err:
        print(f"mico-kafka-faas-connector: {err}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)

    from confluent_kafka import Consumer, KafkaException, Producer

    from faas_connector.function import Gateway
    from faas_connector.metrics import Metrics
    from faas_connector.runtime import Connector, consumer_settings, producer_settings

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    metrics = Metrics()
    try:
        server = Server(
            "0.0.0.0",  # noqa: S104 - the pod's port, for Prometheus and the kubelet
            config.http_port,
            admit=lambda _request, _length: None,
            handle=lambda request: _answer(request, metrics, stop),
            limits=Limits(workers=1, max_body=0, body_budget=0),
        )
    except OSError as err:
        print(f"mico-kafka-faas-connector: port {config.http_port}: {err.strerror}", file=sys.stderr)
        return 2
    connector = Connector(
        config,
        consumer=Consumer(consumer_settings(config)),
        producer=Producer(producer_settings(config)),
        gateway=Gateway(config.gateway, timeout=config.function_timeout_seconds),
        metrics=metrics,
    )
    log.info(
        "connector started",
        extra={
            "input": config.input_topic,
            "output": config.output_topic,
            "function": config.function,
            "group": config.group_id,
        },
    )
    try:
        connector.run(stop.is_set)
    except KafkaException as err:
        log.error("Kafka: %s", err.args[0].str() if err.args else err)
        return 1
    finally:
        server.shutdown()
    log.info("connector stopped")
    return 0


def _answer(request: Request, metrics: Any, stop: threading.Event) -> Response:
    if request.path == "/metrics":
        return Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
    if request.path == "/healthz":
        return Response(
            503 if stop.is_set() else 200, b"stopping\n" if stop.is_set() else b"ok\n", "text/plain"
        )
    return Response(404, f"not found; this port serves {_PATHS}\n".encode(), "text/plain")
