"""Command line: argument parsing and exit codes only; the work happens in the stages.

Exit codes are for CI: 0 success (valid, or no change), 1 the answer is "no" (invalid spec,
or `diff` found changes), 2 the command could not run (usage, I/O, bad revision).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import __version__, logs
from reconciler.plan import tracking_id
from reconciler.redact import redact
from reconciler.render import Settings, render
from reconciler.render.manifest import to_documents
from reconciler.render.settings import SettingsError
from reconciler.review import compare
from reconciler.review import report as review_report
from reconciler.source.files import SourceError, read_path, read_revision
from reconciler.spec import Spec, SpecError, load
from reconciler.spec.schema import json_schema
from reconciler.store import Store

if TYPE_CHECKING:
    from reconciler.engine import Engine

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2

_VALIDATE_EXAMPLES = """\
examples:
  mico-reconciler validate examples/mico.yaml
  mico-reconciler validate config/ --output json     # every mico.yaml and *.mico.yaml below config/

exit codes: 0 valid, 1 invalid (one line per problem: FILE:LINE:COL: field: message),
            2 usage or I/O error
"""
_RENDER_EXAMPLES = """\
examples:
  mico-reconciler render examples/mico.yaml
  mico-reconciler render config/ --namespace apps --registry registry.example.com/team | kubectl diff -f -

every option can also be set by an environment variable, e.g. MICO_NAMESPACE, MICO_REGISTRY.
exit codes: 0 rendered, 1 invalid spec, 2 usage or I/O error
"""
_DIFF_EXAMPLES = """\
examples:
  mico-reconciler diff --repo . --base origin/main --head HEAD
  mico-reconciler diff --repo . --base main --head feature --path config/ --output markdown > comment.md

exit codes: 0 no change, 1 changes, 2 error (unknown revision, or an invalid config at
            either revision: its problems are printed)
"""
_RUN_EXAMPLES = """\
examples:
  mico-reconciler run --repo https://git.example.com/team/config.git --path apps --kubeconfig ~/.kube/config
  MICO_REPO=git://127.0.0.1:9418/config.git MICO_WEBHOOK_SECRET_FILE=/etc/mico/webhook mico-reconciler run

every flag also has an environment variable: MICO_ and the flag's name in capitals (MICO_REPO,
MICO_INTERVAL, MICO_SELF_HEAL=false, ...). Logs are JSON lines on stderr.
endpoints: /metrics /healthz /readyz /api/applications[/NAME] /api/history
           POST /webhook/github (X-Hub-Signature-256), POST /webhook/generic (Authorization: Bearer SECRET)
"""
_SYNC_EXAMPLES = """\
examples:
  mico-reconciler sync --once --repo git://127.0.0.1:9418/config.git --kubeconfig .platform/kubeconfig

exit codes: 0 converged, 1 invalid config (nothing applied), 2 usage error,
            3 refused by the prune guard, 4 failed (git or Kubernetes)
"""
_HISTORY_EXAMPLES = """\
examples:
  mico-reconciler history --state-db state.db --app realworld
  mico-reconciler status --state-db state.db realworld --output json
"""
_SCHEMA_EXAMPLES = """\
examples:
  mico-reconciler schema > schemas/mico.schema.json
"""


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("render settings (defaults are MICO's)")
    for field in fields(Settings):
        default = field.default
        assert isinstance(default, str | int)
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=type(default),
            default=os.environ.get(f"MICO_{field.name.upper()}", default),
            metavar=field.name.upper(),
            help=f"default: {default} (env MICO_{field.name.upper()})",
        )


def _option(parser: argparse._ActionsContainer, flag: str, **kwargs: Any) -> None:
    """A flag whose default may come from MICO_<FLAG> in the environment."""
    variable = "MICO_" + flag.lstrip("-").replace("-", "_").upper()
    if variable in os.environ:
        value = os.environ[variable]
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            kwargs["default"] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            kwargs["default"] = value
            kwargs.pop("required", None)
    kwargs["help"] = f"{kwargs.get('help', '')} (env {variable})".strip()
    parser.add_argument(flag, **kwargs)


def _add_reconcile_options(parser: argparse.ArgumentParser, *, daemon: bool) -> None:
    group = parser.add_argument_group("reconcile")
    _option(group, "--repo", required=True, help="config repository URL (https, ssh, git or file)")
    _option(group, "--path", default=".", help="config path inside the repository")
    _option(group, "--branch", default="main", help="branch, tag or commit id to follow")
    _option(group, "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster config)")
    _option(group, "--state-db", default=".mico-reconciler/state.db", help="SQLite history file")
    _option(group, "--workdir", default=".mico-reconciler/repo", help="where the repository is fetched to")
    _option(group, "--git-timeout", type=float, default=120, help="seconds a git fetch may take")
    _option(group, "--ssh-key-file", default=None, help="private key for ssh repository URLs")
    _option(
        group,
        "--self-heal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="revert changes made outside the reconciler",
    )
    _option(
        group,
        "--max-prune-fraction",
        type=float,
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
    _option(group, "--concurrency", type=int, default=8, help="objects applied in parallel")
    _option(group, "--build-concurrency", type=int, default=2, help="image builds run in parallel")
    _option(
        group,
        "--build-backoff-seconds",
        type=float,
        default=30,
        help="wait before retrying a failed build; doubles with each failure (max 30 min)",
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
        group,
        "--kafka-admin-bootstrap-servers",
        default=None,
        help="where the reconciler reaches Kafka (default: --kafka-bootstrap-servers, as the workloads do)",
    )
    _option(group, "--topic-partitions", type=int, default=1, help="partitions of created topics")
    _option(
        group, "--topic-replication-factor", type=int, default=1, help="replication factor of created topics"
    )
    _option(
        group,
        "--topic-deletion",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="delete topics the config no longer names (default: keep and report them as orphaned)",
    )
    _option(
        group,
        "--kafka-backoff-seconds",
        type=float,
        default=10,
        help="wait before retrying an unreachable broker; doubles per failure (max 10 min)",
    )
    _option(group, "--history-retention", type=int, default=500, help="runs kept in the state database")
    _option(group, "--log-level", default="info", choices=("debug", "info", "warning", "error"))
    if daemon:
        _option(
            group, "--interval", type=float, default=60, help="seconds between scheduled runs (10%% jitter)"
        )
        _option(group, "--listen", default="127.0.0.1:8080", help="HOST:PORT of the HTTP endpoints")
        _option(group, "--webhook-secret-file", default=None, help="shared secret of the webhooks")
        _option(
            group,
            "--leader-election",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="hold a Lease so that only one replica reconciles",
        )
        _option(
            group, "--lease-namespace", default=None, help="namespace of the Lease (default: --namespace)"
        )
    else:
        parser.add_argument(
            "--once", action="store_true", default=True, help="run once and exit (the default)"
        )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mico-reconciler",
        description="A declarative GitOps reconciler for MICO applications.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    validate = commands.add_parser(
        "validate",
        help="check a config against the contract",
        epilog=_VALIDATE_EXAMPLES,
        formatter_class=formatter,
    )
    validate.add_argument("path", type=Path, help="a mico.yaml file or a directory")
    validate.add_argument("--output", choices=("text", "json"), default="text")

    render_cmd = commands.add_parser(
        "render",
        help="print the desired Kubernetes objects",
        epilog=_RENDER_EXAMPLES,
        formatter_class=formatter,
    )
    render_cmd.add_argument("path", type=Path, help="a mico.yaml file or a directory")
    _add_settings_options(render_cmd)

    diff = commands.add_parser(
        "diff",
        help="what a config change does, between two git revisions",
        epilog=_DIFF_EXAMPLES,
        formatter_class=formatter,
    )
    diff.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    diff.add_argument("--base", required=True, help="revision before the change, e.g. origin/main")
    diff.add_argument("--head", required=True, help="revision after the change, e.g. HEAD")
    diff.add_argument("--path", default=".", help="config path inside the repository (default: .)")
    diff.add_argument("--output", choices=("text", "markdown", "json"), default="text")
    _add_settings_options(diff)

    for name, help_text, epilog in (
        ("run", "the daemon: keep the cluster equal to the config repository", _RUN_EXAMPLES),
        ("sync", "one reconcile run, for CI or cron", _SYNC_EXAMPLES),
    ):
        command = commands.add_parser(name, help=help_text, epilog=epilog, formatter_class=formatter)
        _add_reconcile_options(command, daemon=name == "run")
        _add_settings_options(command)
    for name, help_text in (
        ("history", "past runs from the state database"),
        ("status", "the latest status of each application"),
    ):
        command = commands.add_parser(
            name, help=help_text, epilog=_HISTORY_EXAMPLES, formatter_class=formatter
        )
        if name == "status":
            command.add_argument("app", nargs="?", help="one application's shortName")
        else:
            _option(command, "--app", help="only runs that assessed this application")
            _option(command, "--limit", type=int, default=20)
        _option(command, "--state-db", default=".mico-reconciler/state.db", help="SQLite history file")
        command.add_argument("--output", choices=("text", "json"), default="text")

    commands.add_parser(
        "schema",
        help="print the JSON Schema of mico.yaml",
        epilog=_SCHEMA_EXAMPLES,
        formatter_class=formatter,
    )
    return parser


def _print_problems(error: SpecError, output: str, *, header: str = "") -> None:
    if output == "json":
        print(json.dumps({"valid": False, "problems": [p.as_dict() for p in error.problems]}, indent=2))
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


def _load_revision(args: argparse.Namespace, revision: str) -> tuple[str, Spec]:
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
    settings = _settings(args)
    try:
        base_commit, base = _load_revision(args, args.base)
        head_commit, head = _load_revision(args, args.head)
    except _ReportedError:
        return EXIT_ERROR
    review = compare(
        base,
        head,
        render(base, settings),
        render(head, settings),
        base_label=f"{args.base}@{base_commit[:7]}",
        head_label=f"{args.head}@{head_commit[:7]}",
    )
    formats = {"text": review_report.text, "markdown": review_report.markdown, "json": review_report.as_json}
    sys.stdout.write(formats[args.output](review))
    return EXIT_NO if review.has_changes else EXIT_OK


def _engine(args: argparse.Namespace, *, watch: bool = False) -> Engine:
    """`watch`: keep a list-then-watch cache of the managed objects (the daemon), instead of
    listing them every run (a single sync)."""
    # imported here: `validate`, `render` and `diff` start in half the time without the clients
    from reconciler.cluster.cache import ObjectCache
    from reconciler.cluster.client import connect
    from reconciler.cluster.resources import DEPLOYMENT, POD, SERVICE
    from reconciler.engine import SELECTOR, Engine, Options
    from reconciler.source.git import GitSource

    logs.configure(args.log_level)
    settings = _settings(args)
    api, counter = connect(args.kubeconfig or os.environ.get("KUBECONFIG"))
    source = GitSource(
        args.repo,
        ref=args.branch,
        path=args.path,
        workdir=Path(args.workdir),
        timeout=args.git_timeout,
        ssh_key_file=args.ssh_key_file,
    )
    Path(args.state_db).parent.mkdir(parents=True, exist_ok=True)
    from_flags = {f.name: getattr(args, f.name) for f in fields(Options) if f.name in vars(args)}
    options = Options(
        settings=settings,
        tracking=tracking_id(repo=redact(args.repo), path=args.path, namespace=settings.namespace),
        force_conflicts=args.conflicts == "force",
        **from_flags,
    )
    objects = None
    if watch:
        objects = ObjectCache(
            api,
            [
                (DEPLOYMENT, settings.namespace),
                (SERVICE, settings.namespace),
                (POD, settings.namespace),
            ],
            SELECTOR,
        )
        objects.start()
    return Engine(
        source=source,
        api=api,
        counter=counter,
        store=Store(args.state_db, retention=args.history_retention),
        options=options,
        objects=objects,
    )


#: `sync` exit codes by run outcome.
_SYNC_EXIT = {"succeeded": EXIT_OK, "invalid": EXIT_NO, "refused": 3, "failed": 4}


def _sync(args: argparse.Namespace) -> int:
    result = _engine(args).run("sync")
    return _SYNC_EXIT[result.outcome.value]


def _run(args: argparse.Namespace) -> int:
    from reconciler.cluster.client import connect
    from reconciler.daemon.service import DaemonOptions, serve

    engine = _engine(args, watch=True)
    host, _, port = args.listen.rpartition(":")
    secret = Path(args.webhook_secret_file).read_bytes().strip() if args.webhook_secret_file else None
    secret = secret or os.environ.get("MICO_WEBHOOK_SECRET", "").encode() or None
    lease_api = connect(args.kubeconfig or os.environ.get("KUBECONFIG"))[0] if args.leader_election else None
    serve(
        engine,
        DaemonOptions(
            interval=args.interval,
            host=host or "127.0.0.1",
            port=int(port),
            webhook_secret=secret,
            lease_api=lease_api,
            lease_namespace=args.lease_namespace or engine.options.settings.namespace,
        ),
    )
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    store = _open_store(args.state_db)
    runs = store.runs(limit=args.limit, app=args.app)
    if args.output == "json":
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started"]))
        revision = (run["revision"] or "-")[:12]
        print(
            f"#{run['id']:<5} {started}  {run['outcome']:<11} {run['trigger']:<16} {revision:<12} "
            f"{len(run['actions'])} actions{'  ' + run['error'] if run['error'] else ''}"
        )
        for action in run["actions"]:
            drift = " [drift]" if action["drift"] else ""
            print(
                f"         {action['outcome']:<10} {action['kind']}/{action['namespace']}/{action['name']}: "
                f"{action['reason']}{drift}"
            )
        for build in run.get("builds", []):
            print(
                f"         build {build['job']} (attempt {build['attempt']}): {build['outcome']}"
                f"{': ' + build['reason'] if build['reason'] else ''}"
            )
        for problem in run["problems"]:
            print(
                f"         {problem['file']}:{problem['line']}:{problem['column']}: {problem['field']}: "
                f"{problem['message']}"
            )
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    store = _open_store(args.state_db)
    statuses = store.statuses(args.app)
    if args.app and not statuses:
        print(f"mico-reconciler: no status for application {args.app!r}", file=sys.stderr)
        return EXIT_NO
    if args.output == "json":
        print(json.dumps({"applications": statuses, "orphanedTopics": _orphans(store)}, indent=2))
        return EXIT_OK
    for name in _orphans(store):
        print(
            f"orphaned topic {name}: no longer named by the config; kept (enable --topic-deletion to delete)"
        )
    for status in statuses:
        print(
            f"{status['app']} {status['version']}: {status['deployment']}, {status['sync']} "
            f"(revision {(status['revision'] or '-')[:12]})"
        )
        for instance, info in sorted(status["detail"].get("instances", {}).items()):
            if "requestedReplicas" in info:
                print(f"  {instance}: {info['availableReplicas']}/{info['requestedReplicas']} available")
                for pod in info["pods"]:
                    print(
                        f"    pod {pod['name']}: {pod['phase']} on {pod['node']}, {pod['restarts']} restarts"
                    )
            for interface, service in sorted(info.get("interfaces", {}).items()):
                ips = ", ".join(service["externalIPs"]) or "no external IP"
                print(f"    interface {interface}: Service {service['service']} ({ips})")
        for topic in status["detail"].get("topics", []):
            print(f"  topic {topic['name']}: {topic['state']}")
        for build in status["detail"].get("builds", []):
            tail = f"\n      {build['logTail']}" if build.get("logTail") else ""
            print(f"  build {build['job']} {build['state']}: {build['reason']}{tail}")
    return EXIT_OK


def _orphans(store: Store) -> list[str]:
    return [t["name"] for t in store.topic_states() if t["state"] == "orphaned"]


def _open_store(path: str) -> Store:
    if not Path(path).exists():
        raise SourceError(f"{path}: no state database (run `mico-reconciler sync` or `run` first)")
    return Store(path)


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "validate": _validate,
        "render": _render,
        "diff": _diff,
        "schema": _schema,
        "run": _run,
        "sync": _sync,
        "history": _history,
        "status": _status,
    }
    try:
        return handlers[args.command](args)
    except SourceError as err:
        print(f"mico-reconciler: {err}", file=sys.stderr)
        return EXIT_ERROR
    except SettingsError as err:
        print(f"mico-reconciler: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
