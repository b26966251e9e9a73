"""Command line: argument parsing and exit codes only; the work happens in the stages.

Exit codes are for CI: 0 success (valid, or no change), 1 the answer is "no" (invalid spec,
or `diff` found changes), 2 the command could not run (usage, I/O, bad revision).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from reconciler import __version__
from reconciler.render import Settings, render
from reconciler.render.manifest import to_documents
from reconciler.render.settings import SettingsError
from reconciler.review import compare
from reconciler.review import report as review_report
from reconciler.source.files import SourceError, read_path, read_revision
from reconciler.spec import Spec, SpecError, load
from reconciler.spec.schema import json_schema

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


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"validate": _validate, "render": _render, "diff": _diff, "schema": _schema}
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
