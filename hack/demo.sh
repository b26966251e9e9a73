#!/usr/bin/env bash
# The README's first command: the local platform, the example config pushed to its git server,
# the daemon reconciling it, then one GitOps change reviewed and brought in by a webhook.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source .platform/env
kubectl="$MICO_PLATFORM_BIN/kubectl --kubeconfig=$KUBECONFIG"
cli=$root/.venv/bin/mico-reconciler
demo=$root/.platform/demo
mkdir -p "$demo"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "namespaces for the workloads and the builds"
for ns in mico-workspace mico-build-bot; do
  $kubectl create namespace "$ns" --dry-run=client -o yaml | $kubectl apply --server-side -f - >/dev/null
done
echo "mico-workspace, mico-build-bot"

step "examples/ pushed to the platform's git server as mico-demo.git"
[[ -d $GIT_ROOT/mico-demo.git ]] || git init -q --bare -b main "$GIT_ROOT/mico-demo.git"
rm -rf "$demo/work" && git clone -q "$GIT_BASE_URL/mico-demo.git" "$demo/work" 2>/dev/null
git -C "$demo/work" checkout -q -B main
cp examples/mico.yaml "$demo/work/mico.yaml"
commit() { git -C "$demo/work" -c user.name=demo -c user.email=demo@example.invalid commit -q -am "$1" --allow-empty; }
git -C "$demo/work" add mico.yaml && commit "MICO's tutorial applications"
git -C "$demo/work" push -q -f origin main
$cli validate "$demo/work/mico.yaml"

step "the daemon (logs: .platform/logs/demo-daemon.log)"
pidfile=$root/.platform/pids/demo-daemon.pid
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")"; sleep 1; fi
rm -f "$demo"/state.db*  # a fresh history; the objects of an earlier demo are adopted by their tracking id
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[[ -f $demo/webhook-secret ]] || python3 -c 'import secrets; print(secrets.token_hex(16))' > "$demo/webhook-secret"
setsid "$cli" run --repo "$GIT_BASE_URL/mico-demo.git" --kubeconfig "$KUBECONFIG" --interval 30 \
  --state-db "$demo/state.db" --workdir "$demo/repo" --listen "127.0.0.1:$port" \
  --webhook-secret-file "$demo/webhook-secret" --kafka-bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS" \
  >>"$root/.platform/logs/demo-daemon.log" 2>&1 < /dev/null &
echo $! > "$pidfile"
api=http://127.0.0.1:$port
deployed() { curl -sf "$api/api/applications" | python3 -c '
import json, sys; apps = json.load(sys.stdin)
sys.exit(0 if len(apps) == 2 and all(a["deployment"] == "Deployed" for a in apps) else 1)' 2>/dev/null; }
for _ in $(seq 180); do deployed && break; sleep 0.5; done  # up to 15 s of it waiting for an old lease
deployed || { echo "the applications did not become Deployed; see .platform/logs/demo-daemon.log"; exit 1; }
$cli status --state-db "$demo/state.db"
echo "status page: $api/"

step "the platform's Prometheus scrapes the daemon (job mico-demo)"
printf '[{"targets": ["127.0.0.1:%s"], "labels": {"job": "mico-demo"}}]\n' "$port" \
  > "$PROMETHEUS_TARGETS_DIR/mico-demo.json"
query='sum by (application, status) (mico_reconciler_application_status{job="mico-demo"} == 1)'
answer() { curl -sf --get "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$query" | python3 -c '
import json, sys; result = json.load(sys.stdin)["data"]["result"]
if not result: sys.exit(1)
for r in result: print("  " + r["metric"]["application"] + ": " + r["metric"]["status"])' 2>/dev/null; }
echo "PromQL: $query"
for _ in $(seq 60); do answer && break; sleep 0.5; done
answer >/dev/null || { echo "Prometheus did not scrape the daemon in 30 s; see $PROMETHEUS_URL/targets"; exit 1; }

step "a GitOps change: scale the RealWorld backend to 3, reviewed as a pull request would be"
sed -i 's/        replicas: 2/        replicas: 3/' "$demo/work/mico.yaml" && commit "scale the backend"
$cli diff --repo "$demo/work" --base HEAD~1 --head HEAD | head -20 || true
git -C "$demo/work" push -q origin main

step "merged: a signed GitHub-style webhook brings it in"
body='{"ref":"refs/heads/main"}'
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$demo/webhook-secret")" | sed 's/^.* //')
curl -s -o /dev/null -w "webhook answered %{http_code}\n" -H "X-GitHub-Event: push" \
  -H "Content-Type: application/json" -H "X-Hub-Signature-256: sha256=$signature" -d "$body" \
  "$api/webhook/github"
scaled() { $kubectl -n mico-workspace get deploy -l ust.mico/name=spring-boot-realworld-example-app \
  -o jsonpath='{.items[0].spec.replicas}' | grep -qx 3; }
for _ in $(seq 20); do scaled && break; sleep 0.25; done
scaled || { echo "the webhook's commit was not applied in 5 s; see .platform/logs/demo-daemon.log"; exit 1; }
$kubectl -n mico-workspace get deployments,services

cat <<TXT

What to look at next:
  $api/                                          # the status page: applications, graphs, history
  $PROMETHEUS_URL/graph?g0.expr=mico_reconciler_application_status   # the same in Prometheus
  source .platform/env && \$MICO_PLATFORM_BIN/kubectl -n mico-workspace get deploy,svc,pods
  $cli history --state-db .platform/demo/state.db
  $cli status --state-db .platform/demo/state.db realworld
  curl $api/metrics | grep ^mico_reconciler     # what Prometheus scrapes (job mico-demo)
  curl $api/api/applications
  $kubectl -n mico-workspace scale deploy -l ust.mico/name=msg-validator --replicas=5   # drift: reverted within 30 s
The daemon keeps running (pid $(cat "$pidfile")); make platform-down stops it with the platform.
TXT
