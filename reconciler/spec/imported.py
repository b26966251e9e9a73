"""Service entries made from a source repository's release tags: MICO's GitHub crawler, in
GitOps form (`mico-reconciler import`). Pure: the tags and which of them hold a Dockerfile
come in, `services:` entries go out, each valid against the contract.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.spec.model import SHORT_NAME_PATTERN, Service
from reconciler.spec.version import MicoVersion

#: The contract's shortName length.
_SHORT_NAME_LENGTH = (3, 54)


class NotImportableError(ValueError):
    """Nothing can be imported as asked: the message says why."""


def short_name_of(url: str) -> str:
    """The shortName a repository's name suggests: `Spring_Boot-App.git` -> `spring-boot-app`."""
    name = re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    candidate = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    candidate = re.sub(r"^[^a-z]+", "", candidate)[: _SHORT_NAME_LENGTH[1]].rstrip("-")
    if len(candidate) < _SHORT_NAME_LENGTH[0] or not re.match(SHORT_NAME_PATTERN, candidate):
        raise NotImportableError(
            f"the repository's name {name!r} makes no shortName: give one with --short-name"
        )
    return candidate


def release_tags(tags: Iterable[str], *, pattern: str | None = None, every: bool = False) -> list[str]:
    """The tags to import, oldest version first: those that are MICO versions (`v1.2.3`,
    `1.2.3`), matching `pattern` (a glob) if given; without `pattern` or `every`, only the
    latest release (no pre-release), as MICO's crawler imported by default."""
    versions = {}
    for tag in tags:
        try:
            versions[tag] = MicoVersion.parse(tag)
        except ValueError:
            continue
    chosen = sorted(
        (t for t in versions if pattern is None or fnmatch.fnmatchcase(t, pattern)),
        key=lambda t: (versions[t].semver, t),
    )
    if pattern is None and not every:
        releases = [t for t in chosen if versions[t].semver.prerelease is None]
        chosen = releases[-1:]
    return chosen


def exposed_ports(dockerfile: str) -> list[tuple[int, str]]:
    """The ports a Dockerfile's EXPOSE instructions name, as (port, TCP|UDP), in order; a port
    given by a build argument (`EXPOSE $PORT`) cannot be known and is left out."""
    ports: list[tuple[int, str]] = []
    text = re.sub(r"\\\r?\n", " ", dockerfile)  # continued lines
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "EXPOSE":
            continue
        for word in words[1:]:
            found = re.fullmatch(r"([0-9]{1,5})(?:/(tcp|udp))?", word, flags=re.IGNORECASE)
            if found and 1 <= int(found.group(1)) <= 65535:
                port = (int(found.group(1)), (found.group(2) or "tcp").upper())
                if port not in ports:
                    ports.append(port)
    return ports


def service_entries(
    url: str,
    short_name: str,
    dockerfiles: Mapping[str, str | None],
    *,
    dockerfile: str = "Dockerfile",
    ports: list[tuple[int, str]] | None = None,
    kafka_enabled: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One `services:` entry per tag whose tree holds the Dockerfile, built from that tag, with
    an interface per port (`ports`, else the Dockerfile's EXPOSE), not public: opening one to
    outside the cluster is the user's decision. Each entry is checked against the contract, so
    what is printed or written validates. Also: why each other tag was skipped."""
    entries, skipped = [], {}
    for tag, text in dockerfiles.items():
        if text is None:
            skipped[tag] = f"no {dockerfile}"
            continue
        offered = ports if ports is not None else exposed_ports(text)
        if not offered and not kafka_enabled:
            skipped[tag] = f"{dockerfile} exposes no port: give --port (or --kafka-enabled)"
            continue
        source: dict[str, Any] = {"git": url}  # built at the tag: the version is the tag
        if dockerfile != "Dockerfile":
            source["dockerfile"] = dockerfile
        entry: dict[str, Any] = {
            "shortName": short_name,
            "version": tag,
            "name": url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git"),
            "source": source,
        }
        if offered:
            entry["interfaces"] = [
                {
                    "name": f"{protocol.lower()}-{port}",
                    "public": False,
                    "ports": [
                        {"port": port, "targetPort": port, **({"type": "UDP"} if protocol == "UDP" else {})}
                    ],
                }
                for port, protocol in offered
            ]
        if kafka_enabled:
            entry["kafkaEnabled"] = True
        Service.model_validate(entry, strict=True)
        entries.append(entry)
    return entries, skipped
