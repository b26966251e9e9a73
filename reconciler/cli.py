"""Command line: argument parsing and exit codes only; the work happens in the stages.

Exit codes are for CI: 0 success (valid, or no change), 1 the answer is "no" (invalid spec,
or `diff` found changes), 2 the command could not run (usage, I/O, bad revision, a bad setting
or state database); `sync` adds 3 (prune guard) and 4 (git, Kubernetes or the kubeconfig
failed). EXIT_CODES lists them per command. Every error is one line on stderr that names the
setting or file and never echoes a value that could hold a credential.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler import __version__, logs
from reconciler.redact import redact
from reconciler.render import Settings, render
from reconciler.render import settings as render_settings
from reconciler.render.manifest import to_documents
from reconciler.render.settings import SettingsError
from reconciler.source.files import SourceError, read_path
from reconciler.spec import Spec, SpecError, load, model
from reconciler.spec.problems import github_annotation, one_line

# What only some commands need is imported in their handlers: `validate` and `render` start
# without git, SQLite, the Kubernetes client or the review tools.
if TYPE_CHECKING:
    from reconciler.engine import Engine
    from reconciler.store import Store

EXIT_OK, EXIT_NO, EXIT_ERROR, EXIT_REFUSED, EXIT_FAILED = 0, 1, 2, 3, 4

_USAGE = "usage error, or an invalid setting (flag or MICO_* variable)"
_STATE_DB = "a state database that is not SQLite, damaged or of another schema version"
#: Every exit code each command can return, and what it means (the epilogs print these).
EXIT_CODES: dict[str, dict[int, str]] = {
    "validate": {
        EXIT_OK: "valid",
        EXIT_NO: "invalid (one line per problem: FILE:LINE:COL: field: message)",
        EXIT_ERROR: "usage or I/O error",
    },
    "render": {EXIT_OK: "rendered", EXIT_NO: "invalid config", EXIT_ERROR: f"{_USAGE}, or an I/O error"},
    "diff": {
        EXIT_OK: "no change",
        EXIT_NO: "changes",
        EXIT_ERROR: f"{_USAGE}, an unknown revision, or an invalid config at either revision "
        "(its problems are printed)",
        EXIT_FAILED: "--live: the cluster cannot be read or refused a dry run (also a missing or "
        "malformed kubeconfig)",
    },
    "sync": {
        EXIT_OK: "converged",
        EXIT_NO: "invalid config (nothing applied)",
        EXIT_ERROR: f"{_USAGE}; an unreadable --ssh-key-file, --ssh-known-hosts or --git-ca-file, a "
        f"--workdir or --state-db that cannot be created, or {_STATE_DB}",
        EXIT_REFUSED: "refused by the prune guard",
        EXIT_FAILED: "failed: git, Kubernetes (also a missing or malformed kubeconfig, or no in-cluster "
        "config), Kafka or a build",
    },
    "run": {
        EXIT_OK: "stopped by SIGTERM or SIGINT",
        EXIT_ERROR: f"{_USAGE}; a missing, unreadable or empty --webhook-secret-file, an unreadable "
        f"--ssh-key-file, --ssh-known-hosts or --git-ca-file, a --workdir or --state-db that cannot be "
        f"created, {_STATE_DB}, or a --listen address that cannot be bound",
        EXIT_FAILED: "no cluster connection: a missing or malformed kubeconfig, or no in-cluster config",
    },
    "history": {EXIT_OK: "printed", EXIT_ERROR: f"{_USAGE}, no state database, or {_STATE_DB}"},
    "status": {
        EXIT_OK: "printed",
        EXIT_NO: "no status for the application or service asked for",
        EXIT_ERROR: f"{_USAGE}, no state database, or {_STATE_DB}",
    },
    "schema": {EXIT_OK: "printed", EXIT_ERROR: "usage error"},
    "import": {
        EXIT_OK: "entries printed (or written with --write)",
        EXIT_NO: "nothing to import (no release tag with the Dockerfile), or --write refused a duplicate",
        EXIT_ERROR: f"{_USAGE}, a repository that cannot be listed or fetched, or a file that cannot be "
        "read or written",
    },
    "graph": {
        EXIT_OK: "drawn",
        EXIT_NO: "invalid config, or no application of that name",
        EXIT_ERROR: f"{_USAGE}, or an I/O error",
    },
}

_VALIDATE_EXAMPLES = """\
examples:
  mico-reconciler validate examples/mico.yaml
  mico-reconciler validate config/ --output json     # every mico.yaml and *.mico.yaml below config/
"""
_RENDER_EXAMPLES = """\
examples:
  mico-reconciler render examples/mico.yaml
  mico-reconciler render config/ --namespace apps --registry registry.example.com/team | kubectl diff -f -

every option can also be set by an environment variable, e.g. MICO_NAMESPACE, MICO_REGISTRY.
"""
_DIFF_EXAMPLES = """\
examples:
  mico-reconciler diff --repo . --base origin/main --head HEAD
  mico-reconciler diff --repo . --base main --head feature --path config/ --output markdown > comment.md
"""
_RUN_EXAMPLES = """\
examples:
  mico-reconciler run --repo https://git.example.com/team/config.git --path apps --kubeconfig ~/.kube/config
  MICO_REPO=git://127.0.0.1:9418/config.git MICO_WEBHOOK_SECRET_FILE=/etc/mico/webhook mico-reconciler run

every flag also has an environment variable: MICO_ and the flag's name in capitals (MICO_REPO,
MICO_INTERVAL, MICO_SELF_HEAL=false, ...). Logs are JSON lines on stderr. Every setting, file and
the state database are checked before the daemon connects to the cluster or serves.
endpoints: / (the status page: applications, one application, /history) /metrics /healthz /readyz
           /api/applications[/NAME] /api/services/NAME /api/history
           POST /webhook/github (X-Hub-Signature-256), POST /webhook/generic (Authorization: Bearer SECRET)
"""
_SYNC_EXAMPLES = """\
examples:
  mico-reconciler sync --once --repo git://127.0.0.1:9418/config.git --kubeconfig .platform/kubeconfig
"""
_HISTORY_EXAMPLES = """\
examples:
  mico-reconciler history --state-db state.db --app realworld
  mico-reconciler status --state-db state.db realworld --output json

the state database is opened read-only: reading it never changes it, even while a daemon writes it.
"""
_GRAPH_EXAMPLES = """\
examples:
  mico-reconciler graph examples/mico.yaml                      # Mermaid, for a Markdown page
  mico-reconciler graph config/ --app realworld --format svg > realworld.svg
  mico-reconciler graph config/ --format dot | dot -Tpng > apps.png   # Graphviz, if installed
"""
_IMPORT_EXAMPLES = """\
examples:
  mico-reconciler import https://github.com/UST-MICO/msg-validator.git          # the latest release
  mico-reconciler import https://github.com/UST-MICO/msg-validator.git --tag 'v1.*' --write config/mico.yaml
  mico-reconciler import git@example.com:team/api.git --all-tags --dockerfile docker/Dockerfile

a version tag is a MICO version (v1.2.3, 1.2.3); each one whose tree holds the Dockerfile becomes a
`services:` entry built from it. --write keeps the file's comments and order.
"""
_SCHEMA_EXAMPLES = """\
examples:
  mico-reconciler schema > schemas/mico.schema.json
"""


def _epilog(examples: str, command: str) -> str:
    codes = "\n".join(
        textwrap.fill(meaning, 96, initial_indent=f"  {code}  ", subsequent_indent="     ")
        for code, meaning in EXIT_CODES[command].items()
    )
    return f"{examples}\nexit codes:\n{codes}\n"


class _Parser(argparse.ArgumentParser):
    """One-line usage errors that echo no value: argparse's own messages quote what was given
    (`invalid choice: '...'`), which may be a credential. Option types below report the form
    expected instead; prefixes of long options are not accepted (their errors quote the value)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"ignored explicit argument .*", "takes no value", redact(message))
        message = re.sub(r"invalid choice: .*? \(choose", "invalid choice (choose", message)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


class _EnvError:
    """A MICO_* variable that failed its option's check; reported after parsing unless the flag
    was given on the command line (the flag wins)."""

    def __init__(self, message: str) -> None:
        self.message = message


def _number(
    kind: Callable[[str], float], expected: str, valid: Callable[[float], bool]
) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}") from None
        if not (math.isfinite(value) and valid(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(options)}")
        return text

    return parse


def _choices(*options: str) -> dict[str, Any]:
    """add_argument's keywords for one of `options` (argparse's `choices` would echo the value)."""
    return {"type": _choice(*options), "metavar": "{" + ",".join(options) + "}"}


def _file_path(text: str) -> str:
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError("expected a file path")
    return text


def _path(text: str) -> Path:
    return Path(_file_path(text))


def _repo(text: str) -> str:
    """A repository URL; credentials belong in MICO_GIT_USERNAME/MICO_GIT_PASSWORD[_FILE], where
    they reach no command line, log, or the fetched repository's config."""
    userinfo = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/@\s]*)@", text)
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError("expected a repository URL (https, ssh, git or file)")
    if userinfo and (":" in userinfo[2] or userinfo[1].lower() in ("http", "https")):
        raise argparse.ArgumentTypeError(
            "expected a repository URL without credentials (give them in MICO_GIT_USERNAME and "
            "MICO_GIT_PASSWORD, or their _FILE variants)"
        )
    return text


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and int(port) <= 65535 and " " not in host):
        raise argparse.ArgumentTypeError("expected HOST:PORT with a port from 0 to 65535")
    return host or "127.0.0.1", int(port)


def _url_prefix(text: str) -> str:
    """A path the status page's links start with: it is written into every page."""
    prefix = text.rstrip("/")
    if prefix and not re.fullmatch(r"(/[A-Za-z0-9._~-]*[A-Za-z0-9_~-][A-Za-z0-9._~-]*){1,16}", prefix):
        raise argparse.ArgumentTypeError(
            "expected a path such as /mico: segments of A-Z a-z 0-9 . _ ~ -, not . or .."
        )
    return prefix


def _setting(name: str, kind: type[str] | type[int]) -> Callable[[str], Any]:
    """A render setting, checked by the rule Settings applies (see render.settings.problem)."""

    def parse(text: str) -> str | int:
        value: str | int = text
        if kind is int:
            try:
                value = int(text)
            except ValueError:
                value = text
        expected = render_settings.problem(name, value)
        if expected is not None:
            raise argparse.ArgumentTypeError(f"expected {expected}")
        return value

    return parse


def _lease_name(text: str) -> str:
    if len(text) > 253 or not re.fullmatch(render_settings.DNS_SUBDOMAIN, text):
        raise argparse.ArgumentTypeError("expected a Lease name: a DNS subdomain, e.g. mico.reconciler-1")
    return text


def _contract(pattern: str, length: int) -> Callable[[str], str]:
    """A value that goes into a mico.yaml entry, checked as the contract checks it (the message
    says what is expected, never echoes the value: a URL may hold a token)."""

    def parse(text: str) -> str:
        if len(text) > length or not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"expected {model.PATTERN_HELP[pattern]}")
        return text

    return parse


_source_url = _contract(model.GIT_URL_PATTERN, 2048)
_relative_path = _contract(model.RELATIVE_PATH_PATTERN, 1024)
_short_name = _contract(model.SHORT_NAME_PATTERN, 54)
_port = _number(int, "a port from 1 to 65535", lambda v: 1 <= v <= 65535)
_POSITIVE_SECONDS = _number(float, "a number of seconds > 0", lambda v: v > 0)
_SECONDS = _number(float, "a number of seconds >= 0", lambda v: v >= 0)
_POSITIVE_INTEGER = _number(int, "an integer >= 1", lambda v: v >= 1)
_FRACTION = _number(float, "a number from 0 to 1", lambda v: 0 <= v <= 1)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("render settings (defaults are MICO's)")
    for field in fields(Settings):
        default = field.default
        assert isinstance(default, str | int)
        _option(
            group,
            f"--{field.name.replace('_', '-')}",
            type=_setting(field.name, type(default)),
            default=default,
            metavar=field.name.upper(),
            help=f"default: {default}",
        )


def _option(parser: argparse._ActionsContainer, flag: str, **kwargs: Any) -> None:
    """A flag whose default may come from MICO_<FLAG> in the environment. The variable's value is
    checked here by the flag's type, and never shown: not in --help, not in an error."""
    variable = "MICO_" + flag.lstrip("-").replace("-", "_").upper()
    if "choices" in kwargs:
        kwargs.update(_choices(*kwargs.pop("choices")))
    if variable in os.environ:
        value = os.environ[variable]
        where = f"{flag} (from {variable})"
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            word = value.strip().lower()
            kwargs["default"] = (
                word in _TRUE if word in _TRUE + _FALSE else _EnvError(f"{where}: expected true or false")
            )
        else:
            try:
                kwargs["default"] = kwargs.get("type", str)(value)
            except argparse.ArgumentTypeError as err:
                kwargs["default"] = _EnvError(f"{where}: {err}")
            kwargs.pop("required", None)
    kwargs["help"] = f"{kwargs.get('help', '')} (env {variable})".strip()
    parser.add_argument(flag, **kwargs)


def _add_plan_options(group: argparse._ActionsContainer) -> None:
    """What decides the plan: shared by the daemon, `sync` and `diff --live`, so a live diff
    plans as the daemon it previews."""
    _option(
        group,
        "--max-prune-fraction",
        type=_FRACTION,
        default=0.5,
        help="refuse a run that would delete more than this share of the managed objects",
    )
    _option(
        group,
        "--force-prune",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="delete even past --max-prune-fraction",
    )
    _option(
        group,
        "--conflicts",
        choices=("force", "fail"),
        default="force",
        help="server-side apply conflicts with other field managers: take the fields over, or fail",
    )
    _option(
        group,
        "--topics",
        choices=("admin", "strimzi", "off"),
        default="admin",
        help="create the Kafka topics the config names through the Admin API, declare them as Strimzi "
        "KafkaTopic resources, or leave topics alone",
    )
    _option(
        group, "--strimzi-cluster", default="my-cluster", help="the strimzi.io/cluster label of KafkaTopics"
    )
    _option(
        group, "--topic-partitions", type=_POSITIVE_INTEGER, default=1, help="partitions of created topics"
    )
    _option(
        group,
        "--topic-replication-factor",
        type=_POSITIVE_INTEGER,
        default=1,
        help="replication factor of created topics",
    )
    _option(
        group,
        "--topic-deletion",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="delete topics the config no longer names (default: keep and report them as orphaned)",
    )


def _add_reconcile_options(parser: argparse.ArgumentParser, *, daemon: bool) -> None:
    group = parser.add_argument_group("reconcile")
    _option(
        group, "--repo", type=_repo, required=True, help="config repository URL (https, ssh, git or file)"
    )
    _option(group, "--path", default=".", help="config path inside the repository")
    _option(group, "--branch", default="main", help="branch, tag or commit id to follow")
    _option(
        group,
        "--kubeconfig",
        type=_file_path,
        default=None,
        help="kubeconfig file (default: in-cluster config)",
    )
    _option(
        group, "--state-db", type=_file_path, default=".mico-reconciler/state.db", help="SQLite history file"
    )
    _option(
        group,
        "--workdir",
        type=_file_path,
        default=".mico-reconciler/repo",
        help="where the repository is fetched to",
    )
    _option(group, "--git-timeout", type=_POSITIVE_SECONDS, default=120, help="seconds a git fetch may take")
    _option(
        group, "--ssh-key-file", type=_file_path, default=None, help="private key for ssh repository URLs"
    )
    _option(
        group,
        "--ssh-known-hosts",
        type=_file_path,
        default=None,
        help="known_hosts file with the ssh server's host key; only these keys are accepted "
        "(default: the system's known hosts)",
    )
    _option(
        group,
        "--ssh-accept-new-host-keys",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="trust an ssh server's host key the first time it is seen and pin it in --workdir "
        "(trust on first use; --ssh-known-hosts is safer)",
    )
    _option(
        group,
        "--git-ca-file",
        type=_file_path,
        default=None,
        help="CA certificates (PEM) an https repository's certificate may chain to, besides the system's",
    )
    _option(
        group,
        "--self-heal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="revert changes made outside the reconciler",
    )
    _add_plan_options(group)
    _option(group, "--concurrency", type=_POSITIVE_INTEGER, default=8, help="objects applied in parallel")
    _option(
        group, "--build-concurrency", type=_POSITIVE_INTEGER, default=2, help="image builds run in parallel"
    )
    _option(
        group,
        "--build-backoff-seconds",
        type=_SECONDS,
        default=30,
        help="wait before retrying a failed build; doubles with each failure (max 30 min)",
    )
    _option(
        group,
        "--kafka-admin-bootstrap-servers",
        type=_setting("kafka_bootstrap_servers", str),
        default=None,
        help="where the reconciler reaches Kafka (default: --kafka-bootstrap-servers, as the workloads do)",
    )
    _option(
        group,
        "--kafka-backoff-seconds",
        type=_SECONDS,
        default=10,
        help="wait before retrying an unreachable broker; doubles per failure (max 10 min)",
    )
    _option(
        group,
        "--history-retention",
        type=_POSITIVE_INTEGER,
        default=500,
        help="runs kept in the state database",
    )
    _option(group, "--log-level", default="info", choices=("debug", "info", "warning", "error"))
    if daemon:
        _option(
            group,
            "--interval",
            type=_POSITIVE_SECONDS,
            default=60,
            help="seconds between scheduled runs (10%% jitter)",
        )
        _option(
            group, "--listen", type=_listen, default="127.0.0.1:8080", help="HOST:PORT of the HTTP endpoints"
        )
        _option(
            group,
            "--url-prefix",
            type=_url_prefix,
            default="",
            help="the path an ingress serves the status page and API under, e.g. /mico (default: the root)",
        )
        _option(
            group,
            "--webhook-secret-file",
            type=_file_path,
            default=None,
            help="shared secret of the webhooks",
        )
        _option(
            group,
            "--leader-election",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="hold a Lease so that only one replica reconciles",
        )
        _option(
            group,
            "--lease-namespace",
            type=_setting("namespace", str),
            default=None,
            help="namespace of the Lease (default: --namespace)",
        )
        _option(
            group,
            "--lease-name",
            type=_lease_name,
            default=None,
            help="name of the Lease, e.g. to grant RBAC on it by name (default: derived from "
            "--repo, --path and --namespace, so two instances never share one)",
        )
    else:
        parser.add_argument(
            "--once", action="store_true", default=True, help="run once and exit (the default)"
        )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mico-reconciler",
        description="A declarative GitOps reconciler for MICO applications.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    validate = commands.add_parser(
        "validate",
        help="check a config against the contract",
        epilog=_epilog(_VALIDATE_EXAMPLES, "validate"),
        formatter_class=formatter,
    )
    validate.add_argument("path", type=_path, help="a mico.yaml file or a directory")
    validate.add_argument(
        "--output",
        default="text",
        help="github: one GitHub Actions annotation per problem, shown on the changed line",
        **_choices("text", "json", "github"),
    )

    render_cmd = commands.add_parser(
        "render",
        help="print the desired Kubernetes objects",
        epilog=_epilog(_RENDER_EXAMPLES, "render"),
        formatter_class=formatter,
    )
    render_cmd.add_argument("path", type=_path, help="a mico.yaml file or a directory")
    _add_settings_options(render_cmd)

    diff = commands.add_parser(
        "diff",
        help="what a config change does, between two git revisions",
        epilog=_epilog(_DIFF_EXAMPLES, "diff"),
        formatter_class=formatter,
    )
    diff.add_argument("--repo", type=_path, default=Path("."), help="git repository (default: .)")
    diff.add_argument("--base", help="revision before the change, e.g. origin/main (not with --live)")
    diff.add_argument(
        "--head", help="revision after the change, e.g. HEAD (--live: default, the working tree)"
    )
    diff.add_argument("--path", default=".", help="config path inside the repository (default: .)")
    diff.add_argument("--output", default="text", **_choices("text", "markdown", "json"))
    live = diff.add_argument_group(
        "live",
        "--live compares the config with the cluster instead of another revision, through the "
        "daemon's observe and plan stages and a server-side dry-run apply of each object it "
        "would change; it writes nothing (it needs get/list on the managed kinds, and patch: a "
        "dry run is authorized like the write it stands for).",
    )
    live.add_argument("--live", action="store_true", help="compare with the cluster")
    _option(
        live, "--kubeconfig", type=_file_path, help="kubeconfig file (default: $KUBECONFIG, else in-cluster)"
    )
    _option(
        live,
        "--tracking-repo",
        type=_repo,
        metavar="URL",
        help="the --repo the daemon was started with, which names the objects it owns "
        "(default: the repository's origin URL)",
    )
    _add_plan_options(live)
    _add_settings_options(diff)

    for name, help_text, epilog in (
        ("run", "the daemon: keep the cluster equal to the config repository", _RUN_EXAMPLES),
        ("sync", "one reconcile run, for CI or cron", _SYNC_EXAMPLES),
    ):
        command = commands.add_parser(
            name, help=help_text, epilog=_epilog(epilog, name), formatter_class=formatter
        )
        _add_reconcile_options(command, daemon=name == "run")
        _add_settings_options(command)
    for name, help_text in (
        ("history", "past runs from the state database"),
        ("status", "the latest status of each application"),
    ):
        command = commands.add_parser(
            name, help=help_text, epilog=_epilog(_HISTORY_EXAMPLES, name), formatter_class=formatter
        )
        if name == "status":
            command.add_argument("app", nargs="?", help="one application's shortName")
            command.add_argument(
                "--service",
                type=_file_path,
                metavar="SHORTNAME[@VERSION]",
                help="one service's instances instead: replicas, pods, the applications using it",
            )
        else:
            _option(command, "--app", help="only runs that assessed this application")
            _option(command, "--limit", type=_POSITIVE_INTEGER, default=20)
        _option(
            command,
            "--state-db",
            type=_file_path,
            default=".mico-reconciler/state.db",
            help="SQLite history file (read-only)",
        )
        command.add_argument("--output", default="text", **_choices("text", "json"))

    importer = commands.add_parser(
        "import",
        help="services: entries from a source repository's release tags",
        epilog=_epilog(_IMPORT_EXAMPLES, "import"),
        formatter_class=formatter,
    )
    importer.add_argument("url", type=_source_url, metavar="GIT_URL", help="the service's source repository")
    which = importer.add_mutually_exclusive_group()
    _option(which, "--tag", type=_file_path, metavar="PATTERN", help="tags matching this glob, e.g. 'v1.*'")
    which.add_argument(
        "--all-tags", action="store_true", help="every version tag (default: the latest release)"
    )
    _option(
        importer,
        "--dockerfile",
        type=_relative_path,
        default="Dockerfile",
        help="the Dockerfile's path in the repository (default: Dockerfile)",
    )
    _option(importer, "--short-name", type=_short_name, help="default: made from the repository's name")
    _option(
        importer,
        "--port",
        type=_port,
        action="append",
        default=[],
        help="the container's port, an interface each (repeatable; default: the Dockerfile's EXPOSE)",
    )
    importer.add_argument(
        "--kafka-enabled", action="store_true", help="the service uses Kafka (it then needs no interface)"
    )
    _option(importer, "--write", type=_path, metavar="FILE", help="add the entries to this mico.yaml")

    graph = commands.add_parser(
        "graph",
        help="draw applications: instances, interfaces, connections, topics, connectors",
        epilog=_epilog(_GRAPH_EXAMPLES, "graph"),
        formatter_class=formatter,
    )
    graph.add_argument(
        "path", type=_path, nargs="?", default=Path("."), help="a mico.yaml file or a directory (default: .)"
    )
    _option(graph, "--app", help="only this application (shortName or shortName@version)")
    graph.add_argument("--format", default="mermaid", **_choices("mermaid", "dot", "svg"))

    commands.add_parser(
        "schema",
        help="print the JSON Schema of mico.yaml",
        epilog=_epilog(_SCHEMA_EXAMPLES, "schema"),
        formatter_class=formatter,
    )
    return parser


def _print_problems(error: SpecError, output: str, *, header: str = "") -> None:
    if output == "json":
        print(json.dumps({"valid": False, "problems": [p.as_dict() for p in error.problems]}, indent=2))
        return
    if output == "github":
        for problem in error.problems:
            print(github_annotation(problem))
        return
    if header:
        print(header, file=sys.stderr)
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    try:
        spec = load(read_path(args.path))
    except SpecError as err:
        _print_problems(err, args.output)
        return EXIT_NO
    if args.output == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "problems": [],
                    "services": len(spec.services),
                    "applications": len(spec.applications),
                },
                indent=2,
            )
        )
    else:
        print(f"{args.path}: valid ({len(spec.services)} services, {len(spec.applications)} applications)")
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        spec = load(read_path(args.path))
    except SpecError as err:
        _print_problems(err, "text")
        return EXIT_NO
    sys.stdout.write(to_documents(render(spec, settings)))
    return EXIT_OK


def _import_services(args: argparse.Namespace) -> int:
    import yaml

    from reconciler.source import tags
    from reconciler.source.edit import DuplicateServiceError, add_services
    from reconciler.spec.imported import NotImportableError, release_tags, service_entries, short_name_of

    try:
        short_name = args.short_name or short_name_of(args.url)
    except NotImportableError as err:
        raise _ExitError(EXIT_ERROR, one_line(str(err))) from err
    chosen = release_tags(tags.remote_tags(args.url), pattern=args.tag, every=args.all_tags)
    entries, skipped = service_entries(
        args.url,
        short_name,
        tags.files_at_tags(args.url, chosen, args.dockerfile),
        dockerfile=args.dockerfile,
        ports=[(port, "TCP") for port in args.port] or None,
        kafka_enabled=args.kafka_enabled,
    )
    for tag, reason in skipped.items():
        print(f"mico-reconciler: {one_line(tag)}: {reason}; skipped", file=sys.stderr)
    if not entries:
        why = "every version tag was skipped" if skipped else "no version tag (v1.2.3, 1.2.3) found"
        print(f"mico-reconciler: nothing to import: {why}", file=sys.stderr)
        return EXIT_NO
    if args.write is None:
        sys.stdout.write(yaml.safe_dump({"services": entries}, sort_keys=False))
        return EXIT_OK
    try:
        add_services(args.write, entries)
    except DuplicateServiceError as err:
        print(f"mico-reconciler: {one_line(str(err))}", file=sys.stderr)
        return EXIT_NO
    versions = ", ".join(e["version"] for e in entries)
    print(f"{one_line(str(args.write))}: added {short_name} {versions}")
    return EXIT_OK


def _graph(args: argparse.Namespace) -> int:
    from reconciler.review import graph

    try:
        spec = load(read_path(args.path))
    except SpecError as err:
        _print_problems(err, "text")
        return EXIT_NO
    try:
        drawn = graph.build(spec, app=args.app)
    except graph.UnknownApplicationError as err:
        print(f"mico-reconciler: {one_line(str(err))}", file=sys.stderr)
        return EXIT_NO
    writers = {"mermaid": graph.mermaid, "dot": graph.dot, "svg": graph.svg}
    sys.stdout.write(writers[args.format](drawn))
    return EXIT_OK


def _load_revision(args: argparse.Namespace, revision: str) -> tuple[str, Spec]:
    from reconciler.source.revision import read_revision

    commit, files = read_revision(args.repo, revision, args.path)
    try:
        return commit, load(files)
    except SpecError as err:
        _print_problems(
            err,
            "json" if args.output == "json" else "text",
            header=f"the config at {revision} ({commit[:12]}) is invalid:",
        )
        raise _ReportedError from err


class _ReportedError(Exception):
    """Already explained to the user; exit with EXIT_ERROR."""


def _diff(args: argparse.Namespace) -> int:
    from reconciler.review import compare, graph, touched
    from reconciler.review import report as review_report

    if args.live:
        return _live_diff(args)
    if args.base is None or args.head is None:
        raise _ExitError(EXIT_ERROR, "diff needs --base and --head (or --live)")
    settings = _settings(args)
    try:
        base_commit, base = _load_revision(args, args.base)
        head_commit, head = _load_revision(args, args.head)
    except _ReportedError:
        return EXIT_ERROR
    head_objects = render(head, settings)
    review = compare(
        base,
        head,
        render(base, settings),
        head_objects,
        base_label=f"{args.base}@{base_commit[:7]}",
        head_label=f"{args.head}@{head_commit[:7]}",
    )
    if args.output == "markdown":
        applications, marked = touched(review, head, head_objects)
        drawn = {key: graph.mermaid(graph.build(head, app=key, changed=marked)) for key in applications}
        sys.stdout.write(review_report.markdown(review, drawn))
    else:
        formats = {"text": review_report.text, "json": review_report.as_json}
        sys.stdout.write(formats[args.output](review))
    return EXIT_NO if review.has_changes else EXIT_OK


def _live_diff(args: argparse.Namespace) -> int:
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    from reconciler.cluster.preview import preview
    from reconciler.engine import Options, describe_error
    from reconciler.plan import tracking_id
    from reconciler.review import live as live_report
    from reconciler.source.revision import origin_url

    if args.base:
        raise _ExitError(EXIT_ERROR, "--live compares with the cluster: give --head (or nothing), not --base")
    settings = _settings(args)
    try:
        if args.head:
            commit, spec = _load_revision(args, args.head)
            label = f"{args.head}@{commit[:7]}"
        else:
            spec = load(read_path(Path(args.repo) / args.path))
            label = "working tree"
    except _ReportedError:
        return EXIT_ERROR
    except SpecError as err:
        _print_problems(err, "json" if args.output == "json" else "text", header="the config is invalid:")
        return EXIT_ERROR
    repo_url = args.tracking_repo or origin_url(Path(args.repo))
    if not repo_url:
        raise _ExitError(EXIT_ERROR, "no --tracking-repo given and the repository has no origin remote")
    options = Options(
        settings=settings,
        tracking=tracking_id(repo=redact(repo_url), path=args.path, namespace=settings.namespace),
        force_conflicts=args.conflicts == "force",
        **_option_flags(args),
    )
    api, _ = _connect(args)
    try:
        review = preview(api, options, spec, head=label)
    except (ApiException, HTTPError, OSError) as err:  # one line, the way a run reports them
        raise _ExitError(EXIT_FAILED, f"Kubernetes API: {redact(describe_error(err))}") from err
    formats = {"text": live_report.text, "markdown": live_report.markdown, "json": live_report.as_json}
    sys.stdout.write(formats[args.output](review))
    return EXIT_NO if review.has_changes else EXIT_OK


class _ExitError(Exception):
    """A one-line explanation for stderr, and the exit code that goes with it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _engine(args: argparse.Namespace, *, watch: bool = False) -> Engine:
    """`watch`: keep a list-then-watch cache of the managed objects (the daemon), instead of
    listing them every run (a single sync). Local inputs (settings, files, the state database)
    are checked first, so their errors are 2 and come before any connection is tried."""
    # imported here: `validate`, `render` and `diff` start in half the time without the clients
    from reconciler.cluster.cache import ObjectCache
    from reconciler.cluster.resources import POD
    from reconciler.engine import SELECTOR, Engine, Options, observed
    from reconciler.plan import tracking_id
    from reconciler.source.access import Access, AccessError
    from reconciler.source.git import GitSource
    from reconciler.store import Store

    settings = _settings(args)
    for flag in ("--ssh-key-file", "--ssh-known-hosts", "--git-ca-file"):
        name = getattr(args, flag[2:].replace("-", "_"))
        if name:
            _regular_file(flag, name)
    if args.ssh_known_hosts and args.ssh_accept_new_host_keys:
        raise _ExitError(EXIT_ERROR, "--ssh-known-hosts and --ssh-accept-new-host-keys: give one of them")
    workdir = Path(args.workdir)
    access = Access(args.ssh_key_file, args.ssh_known_hosts, args.ssh_accept_new_host_keys, args.git_ca_file)
    try:
        access.check(workdir)
    except AccessError as err:
        raise _ExitError(EXIT_ERROR, str(err)) from err
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = "not a directory" if workdir.exists() else err.strerror
        raise _ExitError(EXIT_ERROR, f"--workdir {workdir}: {reason}") from err
    store = Store(args.state_db, retention=args.history_retention)
    logs.configure(args.log_level)
    api, counter = _connect(args)
    source = GitSource(
        args.repo,
        ref=args.branch,
        path=args.path,
        workdir=workdir,
        timeout=args.git_timeout,
        access=access,
    )
    options = Options(
        settings=settings,
        tracking=tracking_id(repo=redact(args.repo), path=args.path, namespace=settings.namespace),
        force_conflicts=args.conflicts == "force",
        **_option_flags(args),
    )
    objects = None
    if watch:
        objects = ObjectCache(api, [*observed(options), (POD, settings.namespace)], SELECTOR)
        objects.start()
    return Engine(source=source, api=api, counter=counter, store=store, options=options, objects=objects)


def _option_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's options given as flags of the same name."""
    from reconciler.engine import Options

    return {f.name: getattr(args, f.name) for f in fields(Options) if f.name in vars(args)}


def _connect(args: argparse.Namespace) -> Any:
    """The cluster client and its request counter; no usable kubeconfig (or in-cluster config)
    fails like the cluster itself (4)."""
    from reconciler.cluster.client import ClusterConfigError, connect

    try:
        return connect(args.kubeconfig or os.environ.get("KUBECONFIG"))
    except ClusterConfigError as err:
        raise _ExitError(EXIT_FAILED, str(err)) from err


def _regular_file(flag: str, name: str) -> Path:
    """`name` as a regular file: a FIFO (which would block the read), device or directory is
    refused before it is opened."""
    path = Path(name)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise _ExitError(EXIT_ERROR, f"{flag} {path}: {err.strerror}") from err
    if not stat.S_ISREG(mode):
        raise _ExitError(EXIT_ERROR, f"{flag} {path}: not a regular file")
    return path


def _webhook_secret(args: argparse.Namespace) -> bytes | None:
    if not args.webhook_secret_file:
        return os.environ.get("MICO_WEBHOOK_SECRET", "").encode() or None
    path = _regular_file("--webhook-secret-file", args.webhook_secret_file)
    try:
        secret = path.read_bytes().strip()
    except OSError as err:
        raise _ExitError(EXIT_ERROR, f"--webhook-secret-file {path}: {err.strerror}") from err
    if not secret:
        raise _ExitError(EXIT_ERROR, f"--webhook-secret-file {path}: empty")
    return secret


#: `sync` exit codes by run outcome.
_SYNC_EXIT = {
    "succeeded": EXIT_OK,
    "invalid": EXIT_NO,
    "refused": EXIT_REFUSED,
    "failed": EXIT_FAILED,
    "interrupted": EXIT_FAILED,
}


def _store_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that opens the state database: its errors are one line, and exit 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from reconciler.store import StoreError

        try:
            return handler(args)
        except StoreError as err:
            raise _ExitError(EXIT_ERROR, str(err)) from err

    return run


@_store_errors
def _sync(args: argparse.Namespace) -> int:
    result = _engine(args).run("sync")
    return _SYNC_EXIT[result.outcome.value]


@_store_errors
def _run(args: argparse.Namespace) -> int:
    from reconciler.cluster.lease import lease_name
    from reconciler.daemon.memory import limit_malloc_arenas
    from reconciler.daemon.service import DaemonOptions, ListenError, serve

    limit_malloc_arenas()  # before _engine starts the watch threads
    secret = _webhook_secret(args)
    engine = _engine(args, watch=True)
    host, port = args.listen
    try:
        serve(
            engine,
            DaemonOptions(
                interval=args.interval,
                host=host,
                port=port,
                webhook_secret=secret,
                lease_api=_connect(args)[0] if args.leader_election else None,
                lease_namespace=args.lease_namespace or engine.options.settings.namespace,
                lease_name=args.lease_name or lease_name(engine.options.tracking),
                url_prefix=args.url_prefix,
            ),
        )
    except ListenError as err:
        raise _ExitError(EXIT_ERROR, str(err)) from err
    return EXIT_OK


@_store_errors
def _history(args: argparse.Namespace) -> int:
    from reconciler.store import Store

    runs = Store(args.state_db, readonly=True).runs(limit=args.limit, app=args.app)
    if args.output == "json":
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started"]))
        revision = (run["revision"] or "-")[:12]
        repeats = ""
        if run["repeats"]:  # identical runs counted on this one (Store.finish_run)
            last = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["last_seen"] or run["started"]))
            repeats = f"  (+{run['repeats']} identical runs, the last at {last})"
        print(
            f"#{run['id']:<5} {started}  {run['outcome']:<11} {run['trigger']:<16} {revision:<12} "
            f"{len(run['actions'])} actions{repeats}{'  ' + run['error'] if run['error'] else ''}"
        )
        for action in run["actions"]:
            drift = " [drift]" if action["drift"] else ""
            print(
                f"         {action['outcome']:<10} {action['kind']}/{action['namespace']}/{action['name']}: "
                f"{action['reason']}{drift}"
            )
        for build in run["builds"]:
            print(
                f"         build {build['job']} (attempt {build['attempt']}): {build['outcome']}"
                f"{': ' + build['reason'] if build['reason'] else ''}"
            )
        for topic in run["topics"]:
            detail = f": {topic['detail']}" if topic["detail"] else ""
            print(f"         topic {topic['name']}: {topic['state']}{detail}")
        for problem in run["problems"]:
            print(
                f"         {problem['file']}:{problem['line']}:{problem['column']}: {problem['field']}: "
                f"{problem['message']}"
            )
    return EXIT_OK


@_store_errors
def _status(args: argparse.Namespace) -> int:
    from reconciler.store import Store, StoreError

    store = Store(args.state_db, readonly=True)
    if args.service is not None:
        return _service_status(store, args)
    statuses = store.statuses(args.app)
    orphans = [t["name"] for t in store.topic_states() if t["state"] == "orphaned"]
    if args.app and not statuses:
        print(f"mico-reconciler: no status for application {args.app!r}", file=sys.stderr)
        return EXIT_NO
    if args.output == "json":
        print(json.dumps({"applications": statuses, "orphanedTopics": orphans}, indent=2))
        return EXIT_OK
    lines = [
        f"orphaned topic {name}: no longer named by the config; kept (enable --topic-deletion to delete)"
        for name in orphans
    ]
    for status in statuses:
        try:
            lines.extend(_status_lines(status))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise StoreError(
                f"{args.state_db}: damaged state database: the status of {status['app']!r} is malformed"
            ) from err
    if lines:
        print("\n".join(lines))
    return EXIT_OK


def _service_status(store: Store, args: argparse.Namespace) -> int:
    from reconciler.plan.health import service_view
    from reconciler.store import StoreError

    short_name, _, version = args.service.partition("@")
    instances = service_view(store.statuses(), short_name, version or None)
    if not instances:
        print(f"mico-reconciler: no status for service {args.service!r}", file=sys.stderr)
        return EXIT_NO
    if args.output == "json":
        print(json.dumps({"service": short_name, "instances": instances}, indent=2))
        return EXIT_OK
    try:
        lines = [line for info in instances for line in _instance_lines(info["instance"], info)]
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise StoreError(f"{args.state_db}: damaged state database: a service status is malformed") from err
    print("\n".join(lines))
    return EXIT_OK


def _status_lines(status: dict[str, Any]) -> Iterator[str]:
    """One application's status as text; `detail` is as the engine wrote it, or raises."""
    totals = status["detail"].get("totals")
    counts = (
        f", {totals['availableReplicas']}/{totals['requestedReplicas']} replicas available, "
        f"{totals['pods']} pods"
        if totals
        else ""
    )
    yield (
        f"{status['app']} {status['version']}: {status['deployment']}, {status['sync']} "
        f"(revision {(status['revision'] or '-')[:12]}){counts}"
    )
    for instance, info in sorted(status["detail"].get("instances", {}).items()):
        yield from _instance_lines(instance, info)
    for topic in status["detail"].get("topics", []):
        yield f"  topic {topic['name']}: {topic['state']}"
    held = status["detail"].get("heldAt")
    if held is not None:
        yield f"  {_hold_line(held)}"
    for build in status["detail"].get("builds", []):
        tail = f"\n      {build['logTail']}" if build.get("logTail") else ""
        yield f"  build {build['job']} {build['state']}: {build['reason']}{tail}"


def _hold_line(held: dict[str, Any]) -> str:
    if held["revision"] is None:
        return "held back: not rolled out yet; it rolls out once its builds succeed"
    kept = f"kept as they are: {held['problem']}" if held["problem"] else "kept"
    return f"held back at revision {held['revision'][:12]} until its builds succeed; its objects are {kept}"


def _instance_lines(instance: str, info: dict[str, Any]) -> Iterator[str]:
    if "requestedReplicas" in info:
        using = ", ".join(info.get("applicationsUsingThisService", []))
        yield (
            f"  {instance}: {info['availableReplicas']}/{info['requestedReplicas']} available"
            f"{f' (used by {using})' if using else ''}"
        )
        for pod in info["pods"]:
            host = f" ({pod['hostIP']})" if pod.get("hostIP") else ""
            started = f", started {pod['startTime']}" if pod.get("startTime") else ""
            ready = "" if "ready" not in pod else (", ready" if pod["ready"] else ", not ready")
            waiting = f", waiting: {pod['waiting']}" if pod.get("waiting") else ""
            yield (
                f"    pod {pod['name']}: {pod['phase']}{ready}{waiting} on {pod['node']}{host}{started}, "
                f"{pod['restarts']} restarts"
            )
    for interface, service in sorted(info.get("interfaces", {}).items()):
        ips = ", ".join(service["externalIPs"]) or "no external IP"
        yield f"    interface {interface}: Service {service['service']} ({ips})"


def _schema(_: argparse.Namespace) -> int:
    from reconciler.spec.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _unrecognized(extra: list[str]) -> str:
    """Unknown arguments by name only: `--x=VALUE` as `--x`, a stray value as `VALUE`."""
    return "unrecognized arguments: " + " ".join(
        a.split("=", 1)[0] if a.startswith("-") else "VALUE" for a in extra
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(_unrecognized(extra))
    for value in vars(args).values():
        if isinstance(value, _EnvError):
            parser.error(value.message)
    handlers = {
        "validate": _validate,
        "render": _render,
        "diff": _diff,
        "schema": _schema,
        "graph": _graph,
        "import": _import_services,
        "run": _run,
        "sync": _sync,
        "history": _history,
        "status": _status,
    }
    try:
        return handlers[args.command](args)
    except (SourceError, SettingsError) as err:
        print(f"mico-reconciler: {err}", file=sys.stderr)
        return EXIT_ERROR
    except _ExitError as err:
        print(f"mico-reconciler: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:
        return EXIT_OK
