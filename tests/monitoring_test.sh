#!/usr/bin/env bash
# The monitoring assets (packaging/monitoring/) against the real relay and a real Prometheus:
# - the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`);
# - the dashboard is valid JSON, and every metric it and the rules name is one the relay
#   exposes (a relay draining into fake-metrix, scraped over loopback);
# - a Prometheus server scraping that relay loads the rules without an error and evaluates
#   every query of the dashboard without an error, each returning data.
# Usage: monitoring_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
relay=$build/tools/metrix-relay/metrix-relay
fake=$build/tools/fake-metrix/fake-metrix
monitoring=$(cd "$src/packaging/monitoring" && pwd)
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
for tool in promtool prometheus curl python3; do
  command -v $tool >/dev/null || { echo "FAIL: $tool is not installed (./scripts/install-deps)" >&2; exit 1; }
done

scratch=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# The rules, and their unit tests.
promtool check rules "$monitoring/metrix-relay-alerts.yml" || fail "promtool check rules"
(cd "$monitoring" && promtool test rules metrix-relay-alerts.test.yml) || fail "promtool test rules"

# A relay draining an outbox (some of it failing, one app paused) into fake-metrix.
key=monitoring-test-key
"$relay" migrate --db "$scratch/outbox.db" >/dev/null
python3 - "$scratch/events.ndjson" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as out:
    for i in range(400):
        app, slug = ("app2", "taqsq") if i % 10 == 0 else ("app1", "unknown" if i % 25 == 1 else "taqsq")
        payload = {"metrixUserId": f"user-{i}", "eventSlug": slug, "advertisingId": "38400000-8cf0-11bd-b23e-10b96e40000d"}
        out.write(json.dumps({"payload": payload, "app_id": app}) + "\n")
EOF
"$relay" import --db "$scratch/outbox.db" "$scratch/events.ndjson" >/dev/null
FAKE_METRIX_KEYS="app1=$key,app2=$key" "$fake" --app app1 --app app2 --slug taqsq --s2s-disabled app2 \
  --error-rate 0.1 --port 0 --port-file "$scratch/fake.port" >"$scratch/fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$scratch/fake.port" ] && break; sleep 0.1; done
printf '%s\n' "$key" >"$scratch/app.key"
chmod 600 "$scratch/app.key"
cat >"$scratch/relay.toml" <<EOF
[apps."app1"]
dev-key-file = "$scratch/app.key"
[apps."app2"]
dev-key-file = "$scratch/app.key"
EOF
"$relay" run --db "$scratch/outbox.db" --endpoint "http://127.0.0.1:$(cat "$scratch/fake.port")" \
  --config "$scratch/relay.toml" --admin-listen 127.0.0.1:0 --backoff-max 100ms 2>"$scratch/relay.log" &
pids+=($!)
admin=""
for _ in $(seq 100); do
  admin=$(grep -o 'admin listener on http://[0-9.:]*' "$scratch/relay.log" | sed 's|.*http://||') || true
  [ -n "$admin" ] && break
  sleep 0.1
done
[ -n "$admin" ] || { cat "$scratch/relay.log" >&2; echo "FAIL: the relay's admin listener did not start" >&2; exit 1; }
for _ in $(seq 100); do
  [ "$("$relay" status --db "$scratch/outbox.db" --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["counts"]; print(c["sent"] + c["failed"])')" -ge 360 ] && break
  sleep 0.2
done
curl -sf "http://$admin/metrics" >"$scratch/metrics.txt" || fail "GET /metrics"
promtool check metrics <"$scratch/metrics.txt" || fail "promtool check metrics"

# Every metric the rules and the dashboard name is exposed.
exposed=$(sed -n 's/^# TYPE \([a-z_]*\) \(.*\)$/\1 \2/p' "$scratch/metrics.txt" |
  awk '{ print $1; if ($2 == "histogram") { print $1 "_bucket"; print $1 "_sum"; print $1 "_count" } }')
named=$(cat "$monitoring/metrix-relay-alerts.yml" "$monitoring/metrix-relay-dashboard.json" |
  grep -o 'metrix_relay_[a-z_]*' | sort -u)
for name in $named; do
  grep -q -x "$name" <<<"$exposed" || fail "$name is named by the monitoring files but not exposed by the relay"
done

# A real Prometheus scraping the relay, with the rules loaded.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$scratch/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$monitoring/metrix-relay-alerts.yml"]
scrape_configs:
  - job_name: metrix-relay
    static_configs: [{targets: ["$admin"]}]
EOF
prometheus --config.file="$scratch/prometheus.yml" --storage.tsdb.path="$scratch/tsdb" \
  --web.listen-address="127.0.0.1:$port" >"$scratch/prometheus.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$port/api/v1"
# Three scrapes at least, so that rate() has points to work on.
for _ in $(seq 150); do
  up=$(curl -sf "$api/query" --data-urlencode 'query=count_over_time(up{job="metrix-relay"}[1m]) >= 4' |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))' 2>/dev/null || echo 0)
  [ "$up" = 1 ] && break
  sleep 0.2
done
[ "$up" = 1 ] || { tail -20 "$scratch/prometheus.log" >&2; fail "Prometheus did not scrape the relay"; }

curl -sf "$api/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] + ": " + str(r.get("lastError")) for r in rules if r.get("health") not in ("ok", "unknown")]
print(f"rules loaded: {len(rules)}; failing: {bad}")
sys.exit(1 if len(rules) < 10 or bad else 0)
' || fail "Prometheus did not load the rules cleanly"

python3 - "$monitoring/metrix-relay-dashboard.json" "$api" <<'EOF' || fail "a dashboard query failed"
import json, sys, urllib.parse, urllib.request
dashboard = json.load(open(sys.argv[1]))
api = sys.argv[2]
failed = 0
queries = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = (target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$app_id", ".*"))
        queries += 1
        url = api + "/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = json.load(urllib.request.urlopen(url))
        except Exception as e:
            print(f"FAIL: {panel['title']}: {expr}: {e}", file=sys.stderr)
            failed += 1
            continue
        if answer.get("status") != "success":
            print(f"FAIL: {panel['title']}: {expr}: {answer}", file=sys.stderr)
            failed += 1
        elif not answer["data"]["result"]:
            print(f"FAIL: {panel['title']}: {expr}: no data", file=sys.stderr)
            failed += 1
print(f"dashboard queries: {queries}, failed: {failed}")
sys.exit(1 if failed else 0)
EOF

[ "$failures" -eq 0 ] || { echo "$failures failures" >&2; exit 1; }
echo "monitoring: ok"
