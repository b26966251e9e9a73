"""Kubernetes names and label values derived from the spec.

MICO drew instance suffixes at random; GitOps needs the same name on every render, so the
8-character suffix is a hash of what identifies the deployment. Validation and rendering both
call these functions, so a name that validates is exactly the name that gets applied.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import unicodedata

MAX_NAME = 63
CONNECTOR_SHORT_NAME = "kafka-faas-connector"


@functools.lru_cache(maxsize=65536)  # validation and every render name the same instances
def _suffix(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:8].lower()


def instance_name(short_name: str, version: str, instance_key: str | None) -> str:
    """Deployment name shared by every application naming the same version and instance key."""
    return f"{short_name}-{_suffix('service', short_name, version, instance_key or '')}"


def connector_name(app_short_name: str, app_version: str, connector_instance: str) -> str:
    """Connectors are never shared: their name hashes the owning application."""
    return f"{CONNECTOR_SHORT_NAME}-{_suffix('connector', app_short_name, app_version, connector_instance)}"


def kubernetes_service_name(instance: str, interface: str) -> str:
    return f"{instance}-{interface}"


def normalize(text: str) -> str:
    """MICO's KubernetesNameNormalizer, without its length check (callers check length)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    name = re.sub(r"[._]+", "-", ascii_text)
    name = re.sub(r"\s+", "-", name)
    name = re.sub(r"[^-a-z0-9]", "", name)
    name = re.sub(r"-+", "-", name).strip("-")
    if not re.match(r"^[a-z]", name):
        name = f"short-name-{name}"
    return name


def build_job_name(short_name: str, version: str) -> str:
    """`build-hello-v1-0-0`, as MICO named its build runs."""
    return normalize(f"build-{short_name}-{version}")


def label_safe(version: str) -> str:
    """A version as a label value or image tag: '+' is not allowed there (as Helm does, '_')."""
    return version.replace("+", "_")
