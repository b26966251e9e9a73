"""Load a config (file contents by path) into a validated `Spec`, or every problem in it.

Pure: it gets bytes, never opens files. Structural errors come from the pydantic models
(the same rules as the JSON Schema); semantic ones from `rules`. Elements that are
structurally valid are still checked semantically, so one run reports all errors.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from reconciler.spec import rules, yamldoc
from reconciler.spec.model import (
    API_VERSION,
    PATTERN_HELP,
    Application,
    ContractModel,
    Dependency,
    Document,
    EnvSource,
    ExecCheck,
    GitSource,
    HttpCheck,
    Interface,
    InterfaceConnection,
    InterfacePort,
    KafkaFaasConnector,
    PortCheck,
    Probe,
    ResourceAmounts,
    Resources,
    Service,
    ServiceDeployment,
    Topic,
    ValueFrom,
)
from reconciler.spec.problems import Marks, Origin, Problem, SpecError, YamlPath, quote
from reconciler.spec.version import MicoVersion

CONFIG_FILE = re.compile(r"(^|/)(mico\.yaml|[^/]+\.mico\.yaml)$")


@dataclass(frozen=True)
class Spec:
    """A validated config: services and applications sorted by name and version."""

    services: tuple[Service, ...]
    applications: tuple[Application, ...]

    def service(self, short_name: str, version: str) -> Service:
        """The service a reference names (versions compare by SemVer precedence)."""
        return self._by_identity[(short_name, MicoVersion.parse(version))]

    def only(self, applications: Collection[str]) -> Spec:
        """The same services, and only the applications named (`shortName@version`)."""
        return replace(self, applications=tuple(a for a in self.applications if a.key in applications))

    @functools.cached_property
    def _by_identity(self) -> dict[tuple[str, MicoVersion], Service]:
        return {(s.short_name, MicoVersion.parse(s.version)): s for s in self.services}


def select_config_files(paths: Iterable[str]) -> list[str]:
    """The files a directory contributes: mico.yaml and *.mico.yaml, in sorted path order."""
    return sorted(p for p in paths if CONFIG_FILE.search(p))


def load(files: Mapping[str, bytes]) -> Spec:
    """Parse and validate; raises SpecError with every problem found."""
    return Loader().load(files)


@dataclass(frozen=True)
class _Parsed:
    """What one file contributes: its elements, where each was written, and its own problems
    (what can still be checked of an invalid file stays, see `_salvage`)."""

    services: tuple[rules.Sourced[Service], ...]
    applications: tuple[rules.Sourced[Application], ...]
    problems: tuple[Problem, ...]


class Loader:
    """`load` that remembers each valid file by its bytes, so a commit that changes one file of
    hundreds parses and validates that file alone; the rules across files always run on all.
    A file with a problem is parsed again every time (its did-you-mean hints are shared by
    the files of one load, and it is rare)."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[bytes, _Parsed]] = {}
        #: Files parsed by `load` (not taken from memory), over the loader's life: the work a
        #: test and the engine count.
        self.files_parsed = 0

    def load(self, files: Mapping[str, bytes]) -> Spec:
        problems: list[Problem] = []
        services: list[rules.Sourced[Service]] = []
        applications: list[rules.Sourced[Application]] = []
        broken: set[str] = set()
        hints = _Hints()
        kept: dict[str, tuple[bytes, _Parsed]] = {}
        for name in sorted(files):
            content = files[name]
            known = self._parsed.get(name)
            if known is not None and known[0] == content:
                parsed = known[1]
            else:
                self.files_parsed += 1
                parsed = _parse_file(name, content, hints, broken)
            if not parsed.problems:
                kept[name] = (content, parsed)
            problems.extend(parsed.problems)
            services.extend(parsed.services)
            applications.extend(parsed.applications)
        self._parsed = kept  # only the files of the latest config stay in memory
        problems.extend(rules.check(services, applications, broken))
        if problems:
            raise SpecError(problems)
        return Spec(
            services=tuple(sorted((s.item for s in services), key=_identity)),
            applications=tuple(sorted((a.item for a in applications), key=_identity)),
        )


def _parse_file(name: str, content: bytes, hints: _Hints, broken: set[str]) -> _Parsed:
    problems: list[Problem] = []
    services: list[rules.Sourced[Service]] = []
    applications: list[rules.Sourced[Application]] = []
    documents, parse_problems = yamldoc.parse(name, content)
    problems.extend(parse_problems)
    documents = [d for d in documents if d.data is not None]
    if not documents and not parse_problems:
        # `---`, `~` or `null` alone is as empty as an empty file: never a config of nothing
        problems.append(Problem(name, 1, 1, "(file)", "the file holds no YAML document (or only null)"))
    for document in documents:
        problems.extend(_collect(document, services, applications, broken, hints))
    return _Parsed(tuple(services), tuple(applications), tuple(problems))


def _identity(item: Service | Application) -> tuple[str, MicoVersion]:
    return (item.short_name, MicoVersion.parse(item.version))


def _collect(
    document: yamldoc.Document,
    services: list[rules.Sourced[Service]],
    applications: list[rules.Sourced[Application]],
    broken: set[str],
    hints: _Hints,
) -> list[Problem]:
    data, marks = document.data, document.marks
    if not isinstance(data, dict):
        line, column = marks.locate(())
        return [
            Problem(
                marks.file,
                line,
                column,
                "(document)",
                f"a document must be a mapping with 'apiVersion: {API_VERSION}', got {_kind(data)}",
            )
        ]
    try:
        parsed = Document.model_validate(data)
    except ValidationError as err:
        _salvage(data, marks, services, applications, broken)
        return problems_from(err, marks, hints=hints, reported=document.reported)
    services.extend(rules.Sourced(s, Origin(marks, ("services", i))) for i, s in enumerate(parsed.services))
    applications.extend(
        rules.Sourced(a, Origin(marks, ("applications", i))) for i, a in enumerate(parsed.applications)
    )
    return []


def _salvage(
    data: dict[Any, Any],
    marks: Marks,
    services: list[rules.Sourced[Service]],
    applications: list[rules.Sourced[Application]],
    broken: set[str],
) -> None:
    """Keep what can still be checked of an invalid document for the semantic rules: valid
    elements whole, and invalid ones with their invalid parts left out (see `_partial`). An
    element whose identity (shortName, version) is invalid is only named in `broken`."""
    kinds: tuple[tuple[str, type[Service] | type[Application], list[Any]], ...] = (
        ("services", Service, services),
        ("applications", Application, applications),
    )
    for key, model, sink in kinds:
        items = data.get(key)
        if not isinstance(items, list):
            continue
        for i, raw in enumerate(items):
            try:
                sink.append(rules.Sourced(model.model_validate(raw), Origin(marks, (key, i))))
                continue
            except ValidationError as err:
                salvaged = _partial(model, raw, err)
            if salvaged is not None:
                item, partial, kept = salvaged
                origin = rules.Renumbered(marks, (key, i), kept) if kept else Origin(marks, (key, i))
                sink.append(rules.Sourced(item, origin, partial))
            elif isinstance(raw, dict) and isinstance(raw.get("shortName"), str):
                broken.add(raw["shortName"])


#: Fields an element cannot be checked without; an error in one leaves the element `broken`.
_IDENTITY = frozenset({"shortName", "version"})
#: Required fields no rule reads: an invalid value is replaced so the rest can be checked.
_PLACEHOLDERS = {"name": "(invalid)"}
#: Rounds of leaving parts out: dropping a field can only surface errors of the element itself.
_ROUNDS = 3


def _partial(
    model: type[Service] | type[Application], raw: Any, err: ValidationError
) -> tuple[Service | Application, frozenset[str], tuple[tuple[str, tuple[int, ...]], ...]] | None:
    """The element without its invalid parts, the fields it lost (wholly or some items of a
    list) and, for each list that lost items, the YAML index of each item kept.

    A list field loses only its invalid items; any other invalid field is left out, so it takes
    its default (or, for `name`, a placeholder). Null values are left out first, since the
    model reports them on the element rather than on the field."""
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        return None
    data: dict[str, Any] = {k: v for k, v in raw.items() if v is not None}
    partial = {k for k, v in raw.items() if v is None}
    kept: dict[str, list[int]] = {}
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    for _ in range(_ROUNDS):
        items: dict[str, set[int]] = {}
        for error in err.errors(include_url=False):
            loc = error["loc"]
            if not loc:  # the element's own rule (nulls, source or image): its fields may pass
                continue
            key = loc[0]
            if not isinstance(key, str) or key in _IDENTITY:
                return None
            if key not in fields:  # an unknown field: leaving it out is the fix
                data.pop(key, None)
                continue
            partial.add(key)
            value = data.get(key)
            if len(loc) > 1 and isinstance(loc[1], int) and isinstance(value, list):
                items.setdefault(key, set()).add(loc[1])
            elif key in _PLACEHOLDERS:
                data[key] = _PLACEHOLDERS[key]
            elif fields[key].is_required():
                return None
            else:
                data.pop(key, None)
        for key, bad in items.items():
            positions = kept.get(key) or list(range(len(data[key])))
            kept[key] = [p for n, p in enumerate(positions) if n not in bad]
            data[key] = [v for n, v in enumerate(data[key]) if n not in bad]
        try:
            item = model.model_validate(data, context=_PARTIAL)
        except ValidationError as again:
            err = again
            continue
        return item, frozenset(partial), tuple((k, tuple(v)) for k, v in sorted(kept.items()))
    return None


#: Validation context of a salvaged element: rules between its fields (source or image) are
#: not checked again, since one of the fields may have been left out.
_PARTIAL = {"partial": True}


#: Every field name of the contract, to suggest a fix for a typo such as `replcas`.
def _models(base: type[ContractModel]) -> list[type[ContractModel]]:
    return [base, *(m for sub in base.__subclasses__() for m in _models(sub))]


_KNOWN_FIELDS = sorted(
    {field.alias or name for model in _models(ContractModel) for name, field in model.model_fields.items()}
)

#: Each model in the user's terms, in the order a "belongs in" hint lists them.
_PLACES: tuple[tuple[type[ContractModel], str], ...] = (
    (Document, "the document itself (top level)"),
    (Service, "a service"),
    (GitSource, "a service's source"),
    (Interface, "a service's interface"),
    (InterfacePort, "an interface's port"),
    (Dependency, "a service's dependency"),
    (Application, "an application"),
    (ServiceDeployment, "an application's service entry"),
    (InterfaceConnection, "a service entry's interfaceConnection"),
    (Topic, "a service entry's topic"),
    (KafkaFaasConnector, "an application's kafkaFaasConnector"),
    (ValueFrom, "an envRefs entry"),
    (EnvSource, "an envFrom entry"),
    (Resources, "resources"),
    (ResourceAmounts, "resources' requests or limits"),
    (Probe, "a readinessProbe or livenessProbe"),
    (HttpCheck, "a probe's http check"),
    (PortCheck, "a probe's tcp check"),
    (ExecCheck, "a probe's exec check"),
)
#: Where each field name belongs, for an unknown field that is a field of another object.
_BELONGS: dict[str, list[str]] = {}
for _model, _place in _PLACES:
    for _name, _field in _model.model_fields.items():
        _BELONGS.setdefault(_field.alias or _name, []).append(_place)


class _Hints:
    """Did-you-mean hints for unknown fields, for the first few only: a file with 200,000
    unknown keys must not cost 200,000 fuzzy searches."""

    LIMIT = 20

    def __init__(self) -> None:
        self.left = self.LIMIT

    def hint(self, key: str) -> str:
        """Where `key` belongs if it is a field of another object, else the closest field
        name: never the rejected key itself."""
        places = _BELONGS.get(key)
        if places is not None:
            return f" here ({quote(key)} belongs in {_either(places)})"
        if self.left <= 0 or len(key) > 64:
            return ""
        self.left -= 1
        close = [c for c in difflib.get_close_matches(key, _KNOWN_FIELDS, n=2, cutoff=0.75) if c != key]
        return f" (did you mean {close[0]!r}?)" if close else ""


def _either(places: list[str]) -> str:
    return places[0] if len(places) == 1 else f"{', '.join(places[:-1])} or {places[-1]}"


def problems_from(
    err: ValidationError,
    marks: Marks,
    prefix: YamlPath = (),
    *,
    hints: _Hints | None = None,
    reported: frozenset[YamlPath] = frozenset(),
) -> list[Problem]:
    """Pydantic errors as problems that point at the offending YAML node; nodes the YAML
    stage already `reported` (an ambiguous scalar, a non-string key) are not reported again."""
    problems = []
    hints = hints or _Hints()
    for error in err.errors(include_url=False):
        loc: YamlPath = prefix + tuple(k for k in error["loc"] if k != "[key]")
        if reported and any(loc[:end] in reported for end in range(1, len(loc) + 1)):
            continue
        problems.append(Origin(marks, loc).problem(_message(error, hints)))
    return problems


def _message(error: Any, hints: _Hints) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return f"unknown field {quote(key)}{hints.hint(key)}"
    if kind == "missing":
        return f"required field {quote(str(loc[-1]))} is missing"
    if kind == "string_pattern_mismatch":
        pattern = error["ctx"]["pattern"]
        return f"{quote(value)} is not {PATTERN_HELP.get(pattern, f'matching {pattern}')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind in ("literal_error", "model_type"):
        message += f", got {_kind(value)}"
    return message


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
