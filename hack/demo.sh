#!/usr/bin/env bash
# The pure pipeline on the example, end to end: validate, render, and the review a pull
# request would get for a change (in a throwaway git repository). The cluster side joins
# when the daemon lands (issue 4).
set -euo pipefail
cd "$(dirname "$0")/.."
cli=.venv/bin/mico-reconciler
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "validate examples/mico.yaml"
$cli validate examples/mico.yaml

step "render: $($cli render examples/mico.yaml | grep -c '^kind:') Kubernetes objects (first 40 lines)"
$cli render examples/mico.yaml | head -40

repo=$(mktemp -d)
trap 'rm -rf "$repo"' EXIT
git -C "$repo" init -q -b main
cp examples/mico.yaml "$repo/mico.yaml"
git -C "$repo" add mico.yaml
git -C "$repo" -c user.name=demo -c user.email=demo@example.invalid commit -q -m "example"
sed -i 's/replicas: 2/replicas: 4/' "$repo/mico.yaml"
git -C "$repo" -c user.name=demo -c user.email=demo@example.invalid commit -q -am "scale the backend"

step "diff HEAD~1..HEAD as a pull-request comment (exit 1 = changes)"
$cli diff --repo "$repo" --base HEAD~1 --head HEAD --output markdown || [ $? -eq 1 ]

step "an invalid change is caught with file, line and field (exit 1)"
sed -i 's/replicas: 4/replcas: 4/' "$repo/mico.yaml"
$cli validate "$repo/mico.yaml" || [ $? -eq 1 ]
