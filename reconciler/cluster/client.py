"""A Kubernetes API client used as a transport, with every request counted.

Requests go through the official client but bodies are raw JSON (no typed models, which are
the slow part). Each request is counted like client-go's `rest_client_requests_total`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from kubernetes import client, config
from prometheus_client import Counter as PromCounter

REQUESTS = PromCounter(
    "rest_client_requests_total",
    "Kubernetes API requests made by the reconciler, by method and status code.",
    ["method", "code"],
)


class RequestCounter:
    """Counts requests of one ApiClient (thread-safe), in total and per method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_method: Counter[str] = Counter()

    def add(self, method: str, code: int) -> None:
        with self._lock:
            self.by_method[method] += 1
        REQUESTS.labels(method=method, code=str(code)).inc()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_method.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.by_method)


def connect(kubeconfig: str | None, *, pool_size: int = 8) -> tuple[client.ApiClient, RequestCounter]:
    """An ApiClient from a kubeconfig file, or the in-cluster config when none is given."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    counter = RequestCounter()
    rest = api.rest_client
    original = rest.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            response = original(method, url, *args, **kwargs)
        except client.ApiException as err:
            counter.add(method, err.status or 0)
            raise
        counter.add(method, response.status)
        return response

    rest.request = counted  # type: ignore[method-assign]
    return api, counter
