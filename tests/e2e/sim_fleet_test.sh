#!/usr/bin/env bash
# A virtual fleet of 1,000 devices (citadel-sim) against the real
# citadel-server, on SQLite and then on PostgreSQL (issue 7, acceptance 1).
# Per backend: a tenant with a product and group, the repository key
# ceremony, an OS image 2.0.0 published and deployed to 100 % of the group's
# OS feed; then every simulated device attests, claims itself with the
# tenant's token, attests again, checks in (mutual TLS, keep-alive), takes
# the update (director + image repository verified with TUF, target length
# and sha256 checked), reports 2.0.0 installed, and uploads a crash report.
# citadel-sim must report attest=1000, claim=1000, check-in>=2000,
# update=1000, report=1000 and 0 errors; the service, asked through the CLI,
# must list 1000 devices on 2.0.0, the deployment 1000 committed, and the
# crash reports as one issue of 1000 reports from 1000 devices.
#
#   sim_fleet_test.sh            both backends (starts a throw-away PostgreSQL
#                                unless CITADEL_TEST_POSTGRES_URL names one)
#   sim_fleet_test.sh sqlite     one backend
#   sim_fleet_test.sh postgres
# CITADEL_SIM_DEVICES sizes the fleet (default 1000); CITADEL_SIM_ARGS adds
# citadel-sim options (e.g. chaos: "--drop-rate 0.1 --kill-download-rate 1").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [ $# -eq 0 ]; then
  bash "$HERE/sim_fleet_test.sh" sqlite
  if [ -n "${CITADEL_TEST_POSTGRES_URL:-}" ]; then
    bash "$HERE/sim_fleet_test.sh" postgres
  else
    PG_DIR=$(mktemp -d /tmp/citadel-sim-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    stop_postgres() { "$ROOT/scripts/postgres-test-server" stop "$PG_DIR" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
    trap stop_postgres EXIT
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    CITADEL_TEST_POSTGRES_URL=$("$ROOT/scripts/postgres-test-server" start "$PG_DIR/cluster" "$PG_PORT") \
      || { echo "FAIL: cannot start PostgreSQL for the test" >&2; exit 1; }
    export CITADEL_TEST_POSTGRES_URL
    bash "$HERE/sim_fleet_test.sh" postgres
  fi
  exit 0
fi

case "$1" in
  sqlite | postgres) export CITADEL_E2E_STORE=$1 ;;
  *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;;
esac
source "$HERE/lib.sh"
DEVICES=${CITADEL_SIM_DEVICES:-1000}
BACKEND=$CITADEL_E2E_STORE

make_manufacturer
start_server
setup_tenant "Sim Maker"

publish_os_update
pass "[$BACKEND] OS 2.0.0 published as $OS_V2 and deployed to 100 % of the retail feed ($DEPLOYMENT)"

# 100 devices a second: the service sheds load beyond what it can attest
# (503 + Retry-After), which the devices honour; --max-retries 30 keeps a
# busy CI machine from turning that backpressure into errors.
started=$SECONDS
status=0
"$BIN/citadel-sim" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --manufacturer-dir "$WORK/manufacturer" --devices "$DEVICES" --connect-rate 100 --max-retries 30 \
  --claim-token "$ADMIN_TOKEN" --tenant "$TENANT_ID" --device-group "$GROUP_ID" \
  --check-ins 2 --check-in-interval 2s --reports-per-device 1 --json ${CITADEL_SIM_ARGS:-} \
  >"$WORK/sim.json" 2>"$WORK/sim.log" || status=$?
elapsed=$((SECONDS - started))
check_sim_figures "$WORK/sim.json" "$DEVICES" $((2 * DEVICES)) "$status"
pass "[$BACKEND] citadel-sim: $DEVICES devices attested, claimed, checked in, updated and reported with 0 errors in ${elapsed}s"

# The service's view, through the CLI.
on_v2=$("$BIN/citadel" device list --os-version 2.0.0 --all --json | json 'len(d["devices"])')
[ "$on_v2" = "$DEVICES" ] || fail "the service lists $on_v2 devices on 2.0.0, not $DEVICES"
all=$("$BIN/citadel" device list --all --json | json 'len(d["devices"])')
[ "$all" = "$DEVICES" ] || fail "the tenant has $all devices, not $DEVICES"
committed=$("$BIN/citadel" deployment show "$DEPLOYMENT" --json | json 'd["progress"]["committed"]')
[ "$committed" = "$DEVICES" ] || fail "deployment $DEPLOYMENT shows $committed committed, not $DEVICES"
"$BIN/citadel" issue list --json >"$WORK/issues.json"
python3 - "$WORK/issues.json" "$DEVICES" <<'EOF_PY' || fail "issues: $(cat "$WORK/issues.json")"
import json, sys
issues = json.load(open(sys.argv[1]))["issues"]
n = int(sys.argv[2])
sim = [i for i in issues if i["component_id"] == "citadel-sim-app"]
assert len(sim) == 1, f"expected the synthetic crashes as one issue, got {len(sim)}"
assert sim[0]["count"] == n, f"issue count {sim[0]['count']} != {n}"
assert sim[0]["device_count"] == n, f"issue device count {sim[0]['device_count']} != {n}"
EOF_PY
pass "[$BACKEND] the service lists $DEVICES devices on 2.0.0, the deployment $DEVICES committed, and one issue of $DEVICES reports from $DEVICES devices"
