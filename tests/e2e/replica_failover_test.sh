#!/usr/bin/env bash
# Two citadel-server replicas behind HAProxy, one killed under load (issue 7,
# acceptance 2). One PostgreSQL; two replicas on two loopback ports sharing
# one data directory (the first creates master key, service CA and TLS
# identity; the second, started after, must reuse them unchanged) and one
# database; HAProxy in front in TCP mode (TLS passthrough: the devices'
# client certificates reach the replicas), round-robin, HTTP-over-TLS health
# checks, retries with redispatch (tests/e2e/lib.sh start_haproxy).
# citadel-sim drives a fleet through HAProxy (attest, claim, check-ins, an
# OS update, a crash report per device); once a third of the fleet is
# claimed, replica 1 is killed with SIGKILL. HAProxy must take it out within
# ~2 s; citadel-sim must finish with 0 errors (retries allowed): no device
# operation failing beyond its retries. Every crash report the sim saw
# acknowledged must be in the store (sim `report` count == rows in
# failure_reports == the issue's count) and every update report too (the
# deployment shows every device committed): no report lost. Replica 1 is
# then restarted and must be put back in rotation and serve requests.
#
# Starts a throw-away PostgreSQL unless CITADEL_TEST_POSTGRES_URL names one.
# CITADEL_SIM_DEVICES sizes the fleet (default 1000).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [ "${1:-}" != run ]; then
  if [ -n "${CITADEL_TEST_POSTGRES_URL:-}" ]; then
    exec bash "$HERE/replica_failover_test.sh" run
  fi
  PG_DIR=$(mktemp -d /tmp/citadel-failover-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  stop_postgres() { "$ROOT/scripts/postgres-test-server" stop "$PG_DIR" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
  trap stop_postgres EXIT
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  CITADEL_TEST_POSTGRES_URL=$("$ROOT/scripts/postgres-test-server" start "$PG_DIR/cluster" "$PG_PORT") \
    || { echo "FAIL: cannot start PostgreSQL for the test" >&2; exit 1; }
  export CITADEL_TEST_POSTGRES_URL
  bash "$HERE/replica_failover_test.sh" run
  exit 0
fi

export CITADEL_E2E_STORE=postgres
source "$HERE/lib.sh"
DEVICES=${CITADEL_SIM_DEVICES:-1000}
DATABASE_URL=${DATABASE_ARGS[1]}
sql() { psql "$DATABASE_URL" -qAtc "$1"; }
test_started=$SECONDS

make_manufacturer

# ---- Two replicas sharing one data directory and one database ----
R1_PORT=$(free_port)
R2_PORT=$(free_port)
start_replica 1 "$R1_PORT"
shared_files=(master.key service-ca.pem service-ca.key server.pem server.key operator-token)
(cd "$SERVER_DATA" && sha256sum "${shared_files[@]}") >"$WORK/data-dir.sha256"
start_replica 2 "$R2_PORT"
(cd "$SERVER_DATA" && sha256sum --quiet -c "$WORK/data-dir.sha256") >"$WORK/data-dir-check.log" 2>&1 \
  || fail "replica 2 changed the shared data directory: $(cat "$WORK/data-dir-check.log")"
served_certificate() {
  openssl s_client -connect "127.0.0.1:$1" -CAfile "$SERVER_DATA/service-ca.pem" -verify_return_error </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256
}
cert1=$(served_certificate "$R1_PORT")
cert2=$(served_certificate "$R2_PORT")
[ -n "$cert1" ] && [ "$cert1" = "$cert2" ] || fail "the replicas serve different TLS certificates: '$cert1' / '$cert2'"
for port in "$R1_PORT" "$R2_PORT"; do
  [ "$(replica_health "$port" | json 'd["store"]')" = postgresql ] || fail "replica on port $port is not on PostgreSQL"
done
pass "replicas 1 (port $R1_PORT) and 2 (port $R2_PORT) share one data directory (unchanged by the second) and one PostgreSQL database"

# ---- HAProxy in front ----
start_haproxy "r1:$R1_PORT" "r2:$R2_PORT"
both_up() { [ "$(haproxy_state r1)" = UP ] && [ "$(haproxy_state r2)" = UP ]; }
wait_until 15 "HAProxy sees both replicas up" both_up
SERVER_URL=$HAPROXY_URL  # the CLI and the fleet go through HAProxy from here on
pass "HAProxy on port $HAPROXY_PORT (TCP passthrough, round-robin, HTTPS health checks): r1 UP, r2 UP"

setup_tenant "Failover Maker"
publish_os_update
pass "tenant, OS 2.0.0 ($OS_V2) published and deployed ($DEPLOYMENT), all through HAProxy"

# ---- The fleet, and a replica killed under it ----
# --max-retries 30 as in sim_fleet_test: the kill costs retries, and a busy
# CI machine adds 503s; neither may turn into an error.
sim_started=$SECONDS
"$BIN/citadel-sim" --server "$HAPROXY_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --manufacturer-dir "$WORK/manufacturer" --devices "$DEVICES" --connect-rate 100 --max-retries 30 \
  --claim-token "$ADMIN_TOKEN" --tenant "$TENANT_ID" --device-group "$GROUP_ID" \
  --check-ins 3 --check-in-interval 2s --reports-per-device 1 --json \
  >"$WORK/sim.json" 2>"$WORK/sim.log" &
SIM_PID=$!
PIDS+=("$SIM_PID")

claimed() { sql "SELECT count(*) FROM devices WHERE claimed_at > 0"; }
third_claimed() { [ "$(claimed)" -ge $((DEVICES / 3)) ]; }
wait_until 90 "a third of the fleet claimed" third_claimed
r1_sessions=$(haproxy_sessions r1)
r2_sessions=$(haproxy_sessions r2)
kill -9 "$REPLICA_PID_1"
killed_at=$(date +%s.%N)
wait "$REPLICA_PID_1" 2>/dev/null || true  # reaped here, so bash does not report "Killed"
at_kill=$(claimed)
r1_down() { [ "$(haproxy_state r1)" = DOWN ]; }
wait_until 10 "HAProxy takes the killed replica out" r1_down
down_after=$(python3 -c "import time; print(f'{time.time() - $killed_at:.1f}')")
kill -0 "$SIM_PID" 2>/dev/null || fail "citadel-sim finished before the kill took effect; the fleet is too small to test failover"
pass "replica 1 killed (SIGKILL) with $at_kill devices claimed, after $r1_sessions/$r2_sessions connections to r1/r2; HAProxy marked it DOWN after ${down_after}s"

# Back in rotation while the fleet still runs (or, if it has finished, for
# the CLI's requests below).
r1_log_lines=$(wc -l <"$WORK/replica-1.log")
start_replica 1 "$R1_PORT"
r1_up() { [ "$(haproxy_state r1)" = UP ]; }
wait_until 15 "HAProxy puts the restarted replica back" r1_up
pass "replica 1 restarted on port $R1_PORT; HAProxy marked it UP again"

sim_done() { ! kill -0 "$SIM_PID" 2>/dev/null; }
wait_until 150 "citadel-sim to finish" sim_done
status=0
wait "$SIM_PID" || status=$?
elapsed=$((SECONDS - sim_started))
check_sim_figures "$WORK/sim.json" "$DEVICES" $((3 * DEVICES)) "$status"
retries=$(json 'sum(r["retries"] for r in d["operations"].values())' <"$WORK/sim.json")
pass "citadel-sim: $DEVICES devices through the kill with 0 errors ($retries retries) in ${elapsed}s"

# ---- No report lost ----
acknowledged=$(json 'd["operations"]["report"]["count"] - d["operations"]["report"]["errors"]' <"$WORK/sim.json")
stored=$(sql "SELECT count(*) FROM failure_reports WHERE tenant_id = '$TENANT_ID'")
[ "$stored" = "$acknowledged" ] || fail "citadel-sim saw $acknowledged crash reports acknowledged, the store holds $stored"
"$BIN/citadel" issue list --json >"$WORK/issues.json"
issue_count=$(json 'sum(i["count"] for i in d["issues"] if i["component_id"] == "citadel-sim-app")' <"$WORK/issues.json")
[ "$issue_count" = "$acknowledged" ] || fail "the service's issues count $issue_count reports, citadel-sim $acknowledged"
committed=$("$BIN/citadel" deployment show "$DEPLOYMENT" --json | json 'd["progress"]["committed"]')
[ "$committed" = "$DEVICES" ] || fail "deployment $DEPLOYMENT shows $committed committed, not $DEVICES"
on_v2=$("$BIN/citadel" device list --os-version 2.0.0 --all --json | json 'len(d["devices"])')
[ "$on_v2" = "$DEVICES" ] || fail "the service lists $on_v2 devices on 2.0.0, not $DEVICES"
pass "no report lost: $acknowledged crash reports acknowledged = $stored stored = $issue_count in the issue; deployment $DEVICES committed, $DEVICES devices on 2.0.0"

# ---- The restarted replica serves again ----
for _ in 1 2 3 4; do "$BIN/citadel" device list --json >/dev/null; done
# Requests other than HAProxy's health checks.
served=$(tail -n +"$((r1_log_lines + 1))" "$WORK/replica-1.log" | grep 'request method=' | grep -vc 'path=/v1/health' || true)
[ "$served" -gt 0 ] || fail "the restarted replica 1 answered no request"
pass "the restarted replica 1 answered $served requests (health checks aside) through HAProxy (total connections r1 $(haproxy_sessions r1), r2 $(haproxy_sessions r2)); test took $((SECONDS - test_started))s"
