"""Adding service entries to a mico.yaml file, keeping what people wrote in it: comments, key
order and quoting survive (ruamel.yaml's round trip; PyYAML would drop every comment). The file
is replaced in one step, or left as it was.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.source.files import SourceError, shown
from reconciler.spec.model import API_VERSION
from reconciler.spec.version import MicoVersion


class DuplicateServiceError(ValueError):
    """The file defines a service version already; nothing was written."""


def _yaml() -> YAML:
    yaml = YAML()  # round trip, YAML 1.2: read as `mico-reconciler validate` reads
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _same(entry: Any, short_name: str, version: str) -> bool:
    if not isinstance(entry, dict) or entry.get("shortName") != short_name:
        return False
    try:
        return MicoVersion.parse(str(entry.get("version"))) == MicoVersion.parse(version)
    except ValueError:
        return False


def add_services(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append `entries` to the `services:` of the file's first document (a new file is made
    with them); a service version the file defines already refuses them all."""
    yaml = _yaml()
    try:
        documents = list(yaml.load_all(path.read_text())) if path.exists() else []
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{shown(str(path))}: cannot read it ({type(err).__name__})") from err
    except YAMLError as err:
        raise SourceError(f"{shown(str(path))}: not YAML ({shown(str(err).splitlines()[0])})") from err
    documents = [d for d in documents if d is not None] or [{"apiVersion": API_VERSION}]
    document = documents[0]
    if not isinstance(document, dict):
        raise SourceError(f"{shown(str(path))}: its first document is not a mapping")
    services = document.setdefault("services", [])
    if not isinstance(services, list):
        raise SourceError(f"{shown(str(path))}: 'services' is not a list")
    taken = [
        f"{e['shortName']} {e['version']}"
        for e in entries
        if any(_same(s, e["shortName"], e["version"]) for s in services)
    ]
    if taken:
        raise DuplicateServiceError(f"{shown(str(path))} defines {', '.join(taken)} already; nothing written")
    services.extend(entries)
    text = io.StringIO()
    yaml.dump_all(documents, text)
    _replace(path, text.getvalue())


def _replace(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except OSError as err:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise SourceError(
            f"{shown(str(path))}: cannot write it ({err.strerror or type(err).__name__})"
        ) from err
