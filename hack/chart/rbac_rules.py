"""Writes the chart's RBAC rules from reconciler/cluster/permissions.py (`make chart-rbac`)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from reconciler.cluster.permissions import chart_rules

HEADER = (
    "# Generated from reconciler/cluster/permissions.py by `make chart-rbac`; do not edit.\n"
    "# The Roles in templates/rbac.yaml grant these rules, each scope in its namespace(s).\n"
)
TARGET = Path(__file__).resolve().parents[2] / "charts" / "mico-reconciler" / "files" / "rbac-rules.yaml"


def text() -> str:
    return HEADER + yaml.safe_dump(chart_rules(), sort_keys=False, width=100)


if __name__ == "__main__":
    TARGET.write_text(text())
    sys.stdout.write(f"wrote {TARGET}\n")
