"""A list-then-watch cache of the managed objects, so a no-op resync makes no API request.

One LIST per kind and namespace fills it, then a watch per kind (with bookmarks) keeps it
current; the watch resumes from the last resourceVersion after a timeout and re-lists only
when the server answers 410 Gone. The reconciler writes its own apply results through, so the
next run never sees an object older than its last write.

A cache whose watch is broken (the apiserver down or refusing) is stale: `list` raises
`StaleCacheError` until the watch is back, so a run never reports success on a view of the cluster
it could not keep current. The watch resumes from its last resourceVersion, so the events
missed meanwhile arrive in order (deletes included) or a 410 makes it list again.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import urllib3
from kubernetes import client

from reconciler import metrics
from reconciler.cluster import resources
from reconciler.plan import Manifest, ObjectRef

log = logging.getLogger("mico_reconciler.cache")
WATCH_SECONDS = 300
PAGE = 100


class _GoneError(Exception):
    """The watch's resourceVersion is too old: list again."""


class StaleCacheError(ConnectionError):
    """The watch of a kind has been failing: the cached objects may be out of date."""


class ObjectCache:
    def __init__(
        self, api: client.ApiClient, sources: list[tuple[resources.Resource, str]], selector: str
    ) -> None:
        self.api = api
        self.selector = selector
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Manifest]] = {(r.kind, ns): {} for r, ns in sources}
        self._synced = {key: threading.Event() for key in self._objects}
        #: Kinds whose watch is failing: since when (wall clock), and why.
        self._failing: dict[tuple[str, str], tuple[float, str]] = {}
        self._sources = sources
        self._stopped = threading.Event()
        #: Changes seen (an object stored or deleted, a list, a watch failing): a run compares it
        #: with the count at the end of the run before to tell that nothing happened since.
        self.changes = 0

    def start(self) -> None:
        for resource, namespace in self._sources:
            threading.Thread(
                target=self._run,
                args=(resource, namespace),
                daemon=True,
                name=f"watch-{resource.plural}-{namespace}",
            ).start()

    def stop(self) -> None:
        self._stopped.set()

    def list(self, resource: resources.Resource, namespace: str, timeout: float = 60) -> list[Manifest]:
        key = (resource.kind, namespace)
        if not self._synced[key].wait(timeout):
            raise TimeoutError(
                f"the cache of {resource.plural} in {namespace} did not sync in {timeout:.0f}s"
            )
        with self._lock:
            failing = self._failing.get(key)
            if failing is not None:
                since, why = failing
                raise StaleCacheError(
                    f"the watch of {resource.plural} in {namespace} has failed since "
                    f"{time.strftime('%H:%M:%S', time.gmtime(since))} UTC ({why}); not using stale objects"
                )
            return list(self._objects[key].values())

    def write_through(self, ref: ObjectRef, obj: Manifest | None) -> None:
        """Record the reconciler's own write (None: deleted) ahead of its watch event."""
        key = (ref.kind, ref.namespace)
        if key not in self._objects:
            return
        with self._lock:
            if obj is None:
                self._forget(key, ref.name)
            else:
                self._store(key, obj)

    def _store(self, key: tuple[str, str], obj: Manifest) -> None:
        obj = slim(obj)
        current = self._objects[key].get(obj["metadata"]["name"])
        if current is None or _newer_or_same(obj, current):
            self._objects[key][obj["metadata"]["name"]] = obj
            # the watch's echo of the reconciler's own write (stored already) is no change
            version = obj["metadata"].get("resourceVersion")
            if current is None or version is None or version != current["metadata"].get("resourceVersion"):
                self.changes += 1

    def _forget(self, key: tuple[str, str], name: str) -> None:
        if self._objects[key].pop(name, None) is not None:
            self.changes += 1

    def _run(self, resource: resources.Resource, namespace: str) -> None:
        key = (resource.kind, namespace)
        version = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._relist(resource, namespace)
                    self._synced[key].set()
                version = self._watch(resource, namespace, version)
            except _GoneError:
                log.info(
                    "watch expired; listing again",
                    extra={"resource": resource.plural, "namespace": namespace},
                )
                version = None
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
                log.warning("watch failed, retrying: %s", err, extra={"resource": resource.plural})
                with self._lock:
                    self._failing.setdefault(key, (time.time(), _reason(err)))
                    self.changes += 1
                metrics.WATCH_FAILING.labels(resource=resource.plural).set(1)
                time.sleep(2)

    def _relist(self, resource: resources.Resource, namespace: str) -> str:
        """One LIST, in pages of PAGE objects so a namespace of thousands of pods never sits in
        memory twice (raw and slimmed): a page's garbage is what start-up leaves the daemon
        holding, so pages are small, for a few more requests once."""
        key = (resource.kind, namespace)
        objects: dict[str, Manifest] = {}
        token = ""
        while True:
            query = [("labelSelector", self.selector), ("limit", str(PAGE))] + (
                [("continue", token)] if token else []
            )
            page = resources.call(self.api, "GET", resource.path(namespace), query=query)
            for item in page.get("items", []):
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                objects[item["metadata"]["name"]] = slim(item)
            token = page["metadata"].get("continue", "")
            if not token:
                break
        with self._lock:
            self._objects[key] = objects
            self.changes += 1
        self._recovered(key, resource)
        return str(page["metadata"]["resourceVersion"])

    def _recovered(self, key: tuple[str, str], resource: resources.Resource) -> None:
        with self._lock:
            was = self._failing.pop(key, None)
        if was is not None:
            log.info("watch recovered", extra={"resource": resource.plural, "namespace": key[1]})
            metrics.WATCH_FAILING.labels(resource=resource.plural).set(0)

    def _watch(self, resource: resources.Resource, namespace: str, version: str) -> str:
        key = (resource.kind, namespace)
        for event in self._events(resource, namespace, version):
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _GoneError
                raise ValueError(f"watch error: {obj.get('message')}")
            version = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", resource.api_version)
            obj.setdefault("kind", resource.kind)
            with self._lock:
                if kind == "DELETED":
                    self._forget(key, obj["metadata"]["name"])
                else:
                    self._store(key, obj)
        return version

    def _events(self, resource: resources.Resource, namespace: str, version: str) -> Iterator[dict[str, Any]]:
        query = [
            ("watch", "true"),
            ("labelSelector", self.selector),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        verb, url, headers, _, _ = self.api.param_serialize(
            "GET",
            resource.path(namespace),
            query_params=query,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json"},
        )
        response = self.api.call_api(
            verb, url, header_params=headers, _request_timeout=(10, WATCH_SECONDS + 30)
        )
        if response.status != 200:
            response.read()
            raise client.ApiException(http_resp=response)
        # accepted from `version` on: whatever was missed meanwhile streams first
        self._recovered((resource.kind, namespace), resource)
        raw = response.response
        buffer = b""
        try:
            for chunk in raw.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
                if self._stopped.is_set():
                    return
        finally:
            raw.release_conn()


def _reason(err: Exception) -> str:
    if isinstance(err, client.ApiException):
        return f"{err.status} {err.reason}"
    return f"{type(err).__name__}: {str(err)[:200]}"


def slim(obj: Manifest) -> Manifest:
    """What the reconciler reads of a cached object: managedFields never; of a Pod only what its
    status needs; each string once (see `_share_strings`). Keeps the daemon's memory flat when
    thousands of objects and pods are cached."""
    obj["metadata"].pop("managedFields", None)
    if obj.get("kind") == "Pod":
        obj = _pod_status(obj)
    _share_strings(obj)
    return obj


def _share_strings(value: dict[str, Any] | list[Any]) -> None:
    """Replace each string value by its interned copy: the same label values, tracking
    annotation, environment values and server defaults recur in every cached object, and a
    decoded JSON object holds a copy of each."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if type(item) is str:
            value[key] = sys.intern(item)  # type: ignore[index]
        elif isinstance(item, dict | list):
            _share_strings(item)


def _pod_status(obj: Manifest) -> Manifest:
    meta, status = obj["metadata"], obj.get("status", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "resourceVersion") if k in meta},
        "spec": {"nodeName": obj.get("spec", {}).get("nodeName")},
        "status": {
            "phase": status.get("phase"),
            "hostIP": status.get("hostIP"),
            "startTime": status.get("startTime"),
            "conditions": [
                {"type": "Ready", "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
            "containerStatuses": [_container_status(c) for c in status.get("containerStatuses") or []],
        },
    }


def _container_status(status: Manifest) -> Manifest:
    """Restarts, and why the container waits (e.g. CreateContainerConfigError)."""
    kept: Manifest = {"restartCount": status.get("restartCount", 0)}
    waiting = (status.get("state") or {}).get("waiting")
    if isinstance(waiting, dict) and waiting.get("reason"):
        kept["state"] = {"waiting": {"reason": waiting["reason"]}}
    return kept


def _newer_or_same(candidate: Manifest, current: Manifest) -> bool:
    """resourceVersions are opaque, but etcd's are integers; when both are, keep the newer."""
    new, old = (
        candidate["metadata"].get("resourceVersion", ""),
        current["metadata"].get("resourceVersion", ""),
    )
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True
