"""A Kubernetes API client used as a transport, with every request counted.

Requests go through the official client but bodies are raw JSON (no typed models, which are
the slow part). Each request is counted like client-go's `rest_client_requests_total`.
"""

from __future__ import annotations

import binascii
import math
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config
from prometheus_client import Counter as PromCounter

from reconciler.cluster.permissions import Request, attributes
from reconciler.redact import redact

REQUESTS = PromCounter(
    "rest_client_requests_total",
    "Kubernetes API requests made by the reconciler, by method and status code.",
    ["method", "code"],
)


class RequestCounter:
    """Counts requests of one ApiClient (thread-safe), in total and per method, and keeps the
    RBAC attributes of each kind of request made (see `permissions`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_method: Counter[str] = Counter()
        self.requests: set[Request] = set()

    def add(self, method: str, url: str, code: int) -> None:
        request = attributes(method, url)
        with self._lock:
            self.by_method[method] += 1
            if request is not None:
                self.requests.add(request)
        REQUESTS.labels(method=method, code=str(code)).inc()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_method.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.by_method)


class ClusterConfigError(Exception):
    """No usable connection settings: a missing or malformed kubeconfig, or no in-cluster config.
    The message names the file and the problem, never a value from it (tokens, keys)."""


def connect(kubeconfig: str | None, *, pool_size: int = 8) -> tuple[client.ApiClient, RequestCounter]:
    """An ApiClient from a kubeconfig file, or the in-cluster config when none is given."""
    configuration = _configuration(kubeconfig)
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    counter = RequestCounter()
    api.rest_client.request = counted(api.rest_client.request, counter)  # type: ignore[method-assign]
    return api, counter


#: 429 Too Many Requests (API Priority and Fairness throttling this client): how often a request
#: is tried again, and the longest wait a Retry-After may ask for.
THROTTLED_ATTEMPTS = 10
MAX_RETRY_AFTER = 10.0


def counted(
    request: Callable[..., Any], counter: RequestCounter, sleep: Callable[[float], None] = time.sleep
) -> Callable[..., Any]:
    """`request`, with every attempt counted, and a throttled one (429) tried again after the
    server's Retry-After (as client-go does), so a throttled run slows down instead of failing."""

    def send(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, THROTTLED_ATTEMPTS + 1):
            try:
                response = request(method, url, *args, **kwargs)
            except client.ApiException as err:
                counter.add(method, url, err.status or 0)
                if err.status != 429 or attempt == THROTTLED_ATTEMPTS:
                    raise
                sleep(_retry_after((err.headers or {}).get("Retry-After")))
                continue
            counter.add(method, url, response.status)
            if response.status != 429 or attempt == THROTTLED_ATTEMPTS:
                return response
            response.read()  # frees the connection for the next attempt
            sleep(_retry_after(response.getheader("Retry-After")))
        raise AssertionError("unreachable")

    return send


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(MAX_RETRY_AFTER, max(0.1, seconds)) if math.isfinite(seconds) else 1.0


def _configuration(kubeconfig: str | None) -> client.Configuration:
    """The client settings, checked as far as they can be without a request: the library's own
    errors (YAML, base64, missing keys) become one ClusterConfigError."""
    where = (
        f"kubeconfig {kubeconfig}"
        if kubeconfig
        else "in-cluster config (no --kubeconfig or KUBECONFIG given)"
    )
    configuration = client.Configuration()
    if kubeconfig and not any(os.path.exists(p) for p in kubeconfig.split(os.pathsep) if p):
        raise ClusterConfigError(f"{where}: no such file")
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as err:
        raise ClusterConfigError(f"{where}: {_one_line(str(err))}") from err
    except OSError as err:
        raise ClusterConfigError(f"{where}: {err.strerror or type(err).__name__}") from err
    except yaml.YAMLError as err:
        raise ClusterConfigError(f"{where}: not YAML") from err
    except binascii.Error as err:
        raise ClusterConfigError(f"{where}: certificate or key data is not base64") from err
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        # e.g. certificate data that is not base64, or a document that is no kubeconfig
        raise ClusterConfigError(f"{where}: not a valid kubeconfig ({type(err).__name__})") from err
    try:
        server = urlsplit(configuration.host)
        valid = server.scheme in ("http", "https") and bool(server.hostname) and server.port != 0
    except ValueError:
        valid = False
    if not valid:
        raise ClusterConfigError(f"{where}: the cluster's server is not an http(s) URL with a host")
    _check_tls(where, configuration)
    return configuration


def _check_tls(where: str, configuration: client.Configuration) -> None:
    """Certificate and key data are only decoded (leniently) into files at load time; parse
    them now, so that garbage fails here rather than as a TLS error at the first request."""
    context = ssl.create_default_context()
    try:
        if configuration.ssl_ca_cert:
            context.load_verify_locations(cafile=configuration.ssl_ca_cert)
    except (ssl.SSLError, OSError) as err:
        raise ClusterConfigError(f"{where}: the certificate authority is not a PEM certificate") from err
    try:
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
    except (ssl.SSLError, OSError) as err:
        raise ClusterConfigError(f"{where}: the client certificate or key is not valid PEM") from err


def _one_line(text: str) -> str:
    return " ".join(redact(text).split())
