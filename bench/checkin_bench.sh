#!/usr/bin/env bash
# Check-ins per second and their latency with mutual TLS and keep-alive
# (issue 7), side by side in one run:
#   * citadel-server on SQLite, then on PostgreSQL: the real check-in
#     (device certificate verified against the tenant CA, inventory and
#     telemetry recorded, the update and app-trust reply built);
#   * nginx answering the same request (POST /v1/device/check-in, the same
#     devices' certificates verified against the same tenant CA at the TLS
#     handshake, keep-alive) with a static file: the machine's practical
#     limit for that request shape.
# One client for all three: citadel-sim, N devices, each with its own
# keep-alive connection, checking in every 100 ms after the whole fleet has
# attested (--check-in-together), so the "active/s" of the check-in row is
# the rate with nothing else running. Loopback only; bounded in devices and
# check-ins.
#
#   bench/checkin_bench.sh [DEVICES [CHECK_INS_PER_DEVICE]]   (default 1000 20)
#   CITADEL_BIN_DIR=build/release/bin  (default)
#   BENCH_BACKENDS="sqlite postgres"   (default both; postgres starts its own
#                                       server unless CITADEL_TEST_POSTGRES_URL is set,
#                                       durable like SQLite: fsync and synchronous
#                                       commit on, CITADEL_PG_DURABLE=1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CITADEL_BIN_DIR=${CITADEL_BIN_DIR:-$ROOT/build/release/bin}
DEVICES=${1:-1000}
CHECK_INS=${2:-20}

if [ -z "${BENCH_ONE:-}" ]; then
  RESULTS=$(mktemp /tmp/citadel-checkin-bench.XXXXXX)
  trap 'rm -f "$RESULTS"' EXIT
  for backend in ${BENCH_BACKENDS:-sqlite postgres}; do
    if [ "$backend" = postgres ] && [ -z "${CITADEL_TEST_POSTGRES_URL:-}" ]; then
      PG_DIR=$(mktemp -d /tmp/citadel-bench-pg.XXXXXX)
      chmod 755 "$PG_DIR"
      PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      URL=$(CITADEL_PG_DURABLE=1 "$ROOT/scripts/postgres-test-server" start "$PG_DIR/cluster" "$PG_PORT")
      BENCH_ONE=$backend CITADEL_TEST_POSTGRES_URL=$URL bash "$0" "$DEVICES" "$CHECK_INS" | tee -a "$RESULTS"
      "$ROOT/scripts/postgres-test-server" stop "$PG_DIR" >/dev/null 2>&1 || true
      rm -rf "$PG_DIR"
    else
      BENCH_ONE=$backend bash "$0" "$DEVICES" "$CHECK_INS" | tee -a "$RESULTS"
    fi
  done
  echo
  echo "check-ins/s (active), p50 / p99 ms, $DEVICES devices x $CHECK_INS check-ins, mutual TLS + keep-alive:"
  grep '^RESULT' "$RESULTS" | cut -d' ' -f2-
  exit 0
fi

export CITADEL_E2E_STORE=$BENCH_ONE
source "$ROOT/tests/e2e/lib.sh"

make_manufacturer
# No rate limits and no access log: this measures serving. Connections for
# every device plus the CLI.
start_server --no-access-log --device-rate 0 --tenant-rate 0 --max-connections $((DEVICES + 100)) \
  --check-in-interval 3600
setup_tenant "Bench"
"$BIN/citadel" ca-certificate download -o "$WORK/tenant-chain.pem" >/dev/null

# nginx: the service's own TLS certificate (so the same pinned CA works),
# the tenant chain for client certificates, a static reply that parses as a
# check-in reply. POST to a static file is 405 in nginx; error_page turns it
# into the file with 200.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/www/v1/device" "$WORK/nginx/tmp"
echo '{"device_id":"static","tenant_id":"static","next_check_in_seconds":3600,"publisher_keys":[],"app_development":null}' \
  >"$WORK/nginx/www/v1/device/check-in"
cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes $(nproc);
worker_rlimit_nofile $((DEVICES * 2 + 1000));
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((DEVICES + 1000)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $SERVER_DATA/server.pem;
    ssl_certificate_key $SERVER_DATA/server.key;
    ssl_client_certificate $WORK/tenant-chain.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    root $WORK/nginx/www;
    location = /v1/device/check-in {
      default_type application/json;
      error_page 405 =200 \$uri;
    }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || fail "nginx did not start: $(cat "$WORK/nginx/error.log")"
NGINX_MASTER=$(cat "$WORK/nginx/nginx.pid")
PIDS+=("$NGINX_MASTER")

SIM=("$BIN/citadel-sim" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem"
  --manufacturer-dir "$WORK/manufacturer" --fleet-file "$WORK/fleet.json" --devices "$DEVICES"
  --connect-rate 2000 --reports-per-device 0 --max-retries 30 --json)

# The fleet: made, attested and claimed once (not measured).
"${SIM[@]}" --claim-token "$ADMIN_TOKEN" --tenant "$TENANT_ID" --device-group "$GROUP_ID" \
  --check-ins 1 >"$WORK/warmup.json" || fail "warm-up run failed: $(cat "$WORK/warmup.json")"

measure() {  # measure LABEL [extra sim args...]
  local label=$1; shift
  "${SIM[@]}" --check-ins "$CHECK_INS" --check-in-interval 100ms --check-in-together "$@" >"$WORK/$label.json" \
    || fail "$label run failed: $(cat "$WORK/$label.json")"
  python3 - "$WORK/$label.json" "$label" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["operations"]["check-in"]
print(f"RESULT {sys.argv[2]:<28} {c['active_per_second']:9.0f}/s   p50 {c['p50_ms']:7.2f} ms   p99 {c['p99_ms']:7.2f} ms"
      f"   ({c['count']} check-ins, {c['errors']} errors, {c['retries']} retries)")
PY
}
measure "citadel-server ($BENCH_ONE)"
measure "nginx static file" --check-in-server "https://127.0.0.1:$NGINX_PORT"
