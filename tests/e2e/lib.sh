# Shared helpers for the end-to-end scripts. Sourced, not run.
# Every process a test starts is on loopback and is killed on exit.
set -euo pipefail

BIN=${CITADEL_BIN_DIR:?CITADEL_BIN_DIR must point at the bin directory of a build}
WORK=$(mktemp -d /tmp/citadel-e2e.XXXXXX)
export CITADEL_CONFIG="$WORK/cli/config.json"
PIDS=()

cleanup() {
  local status=$?
  exec 3>&2 2>/dev/null  # bash reports each killed job on stderr; nobody needs that
  # TERM first: citadeld stops its apps (they are not its children's
  # children, and would outlive a SIGKILLed runtime); then KILL what is left.
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exec 2>&3
  if [ $status -ne 0 ]; then
    echo "---- logs (test failed with status $status) ----"
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_until TIMEOUT_SECONDS DESCRIPTION COMMAND...: polls the condition.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}

SERVER_PORT=$(free_port)
SERVER_URL="https://127.0.0.1:$SERVER_PORT"
SERVER_DATA="$WORK/server"
SERVER_PID=""

make_manufacturer() {
  "$BIN/citadel" manufacturer create-ca --dir "$WORK/manufacturer" --json >/dev/null
}

health() { curl -sf --cacert "$SERVER_DATA/service-ca.pem" "$SERVER_URL/v1/health"; }

# With CITADEL_E2E_STORE=postgres the service runs on a fresh database in
# the PostgreSQL named by CITADEL_TEST_POSTGRES_URL (required then).
DATABASE_ARGS=()
if [ "${CITADEL_E2E_STORE:-sqlite}" = postgres ]; then
  : "${CITADEL_TEST_POSTGRES_URL:?CITADEL_E2E_STORE=postgres needs CITADEL_TEST_POSTGRES_URL (scripts/run-tests starts one)}"
  db="e2e_$(date +%s)_$$"
  psql "$CITADEL_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db" >/dev/null
  DATABASE_ARGS=(--database "${CITADEL_TEST_POSTGRES_URL%/*}/$db")
fi

start_server() {
  "$BIN/citadel-server" --listen "127.0.0.1:$SERVER_PORT" --data "$SERVER_DATA" "${DATABASE_ARGS[@]}" \
    --trust-manufacturer-ca "$WORK/manufacturer/manufacturer-ca.pem" "$@" >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_until 30 "citadel-server health" health
  local store
  store=$(health | json 'd["store"]')
  [ "$store" = "$([ "${CITADEL_E2E_STORE:-sqlite}" = postgres ] && echo postgresql || echo sqlite)" ] \
    || fail "the service runs on the $store store, not the one this test asked for"
}

# Logs the CLI in as the operator, creates a tenant and a product, and logs
# in as the tenant admin. Sets TENANT_ID, GROUP_ID, ADMIN_TOKEN.
setup_tenant() {
  "$BIN/citadel" login --server "$SERVER_URL" --token "$(cat "$SERVER_DATA/operator-token")" \
    --ca "$SERVER_DATA/service-ca.pem" --json >/dev/null
  local created
  created=$("$BIN/citadel" tenant create "${1:-Acme}" --json)
  TENANT_ID=$(json 'd["tenant"]["id"]' <<<"$created")
  ADMIN_TOKEN=$(json 'd["admin_token"]["token"]' <<<"$created")
  "$BIN/citadel" login --server "$SERVER_URL" --token "$ADMIN_TOKEN" --ca "$SERVER_DATA/service-ca.pem" --json >/dev/null
  local product
  product=$("$BIN/citadel" product create Thermostat --json)
  GROUP_ID=$(json '[g["id"] for g in d["device_groups"] if g["name"]=="Development"][0]' <<<"$product")
}

device_dir() { echo "$WORK/devices/device-$1"; }
device_id() { "$BIN/citadeld" id --state "$(device_dir "$1")" 2>/dev/null; }
device_state() { json 'd.get("state","")' <"$(device_dir "$1")/status.json"; }
device_field() { json "d.get(\"$2\",\"\")" <"$(device_dir "$1")/status.json"; }

provision_device() {
  "$BIN/citadeld" provision --state "$(device_dir "$1")" --manufacturer-ca "$WORK/manufacturer" >/dev/null
}

start_device() {
  local n=$1; shift
  "$BIN/citadeld" run --state "$(device_dir "$n")" --server "$SERVER_URL" \
    --server-ca "$SERVER_DATA/service-ca.pem" --os-version 1.0.0 "$@" >>"$WORK/device-$n.log" 2>&1 &
  PIDS+=($!)
  eval "DEVICE_PID_$n=$!"
}

is_attested() { [ -f "$(device_dir "$1")/status.json" ] && [ "$(device_state "$1")" = attested ]; }
claim() { "$BIN/citadel" device claim "$(device_id "$1")" --device-group "$GROUP_ID" --json >/dev/null; }

# make_broker_certificate SANS: a test broker CA (WORK/broker-ca.pem) and a
# broker certificate for SANS (e.g. "IP:127.0.0.1") in WORK/broker.{pem,key}.
make_broker_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/broker-ca.key" \
    -out "$WORK/broker-ca.pem" -subj "/CN=Test Broker CA" -days 1 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/broker.key" \
    -out "$WORK/broker.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=%s\n' "$1" >"$WORK/broker.ext"
  openssl x509 -req -in "$WORK/broker.csr" -CA "$WORK/broker-ca.pem" -CAkey "$WORK/broker-ca.key" \
    -CAcreateserial -out "$WORK/broker.pem" -days 1 -extfile "$WORK/broker.ext" 2>/dev/null
}

# start_broker: Mosquitto on 127.0.0.1 and 127.0.0.2 at BROKER_PORT (set
# here): TLS with a test broker certificate (WORK/broker-ca.pem), client
# certificates required and trusted only from the tenant CA chain
# (WORK/tenant-chain.pem, downloaded with the logged-in CLI). Log:
# WORK/mosquitto.log.
start_broker() {
  "$BIN/citadel" ca-certificate download -o "$WORK/tenant-chain.pem" >/dev/null
  grep -q "BEGIN CERTIFICATE" "$WORK/tenant-chain.pem" || fail "could not get the tenant CA chain"
  make_broker_certificate "IP:127.0.0.1,IP:127.0.0.2"
  BROKER_PORT=$(free_port)
  # TLS settings are per listener in mosquitto.conf: both get the same.
  {
    printf 'user root\npersistence false\nlog_dest file %s\nlog_type all\n' "$WORK/mosquitto.log"
    for address in 127.0.0.1 127.0.0.2; do
      printf 'listener %s %s\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\n' \
        "$BROKER_PORT" "$address" "$WORK/tenant-chain.pem" "$WORK/broker.pem" "$WORK/broker.key"
    done
  } >"$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto-stdout.log" 2>&1 &
  PIDS+=($!)
  wait_until 10 "mosquitto listening" bash -c "exec 3<>/dev/tcp/127.0.0.1/$BROKER_PORT"
}

# ---- TPM devices (issue 6) ----
# Software TPMs made by scripts/swtpm-test-server, all certified by one
# vendor CA in TPM_VENDOR_CA (the service trusts its root with
# --trust-tpm-manufacturer-ca "$TPM_VENDOR_CA/swtpm-localca-rootca-cert.pem").
# TPM N lives in WORK/tpms/tpm-N; its swtpm is killed on exit like the rest.
TPM_VENDOR_CA="$WORK/tpm-vendor"
SWTPM_TEST_SERVER="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/swtpm-test-server"

tpm_dir() { echo "$WORK/tpms/tpm-$1"; }
tpm_tcti() { local var="TPM_TCTI_$1"; echo "${!var:?TPM $1 was not started}"; }

# make_tpm N: manufactures TPM N (EK certified by TPM_VENDOR_CA) and starts
# it on loopback; sets TPM_TCTI_N.
make_tpm() {
  local n=$1 tcti
  "$SWTPM_TEST_SERVER" manufacture "$(tpm_dir "$n")" "$TPM_VENDOR_CA" >/dev/null || fail "manufacturing TPM $n failed"
  tcti=$("$SWTPM_TEST_SERVER" start "$(tpm_dir "$n")") || fail "starting TPM $n failed"
  PIDS+=("$(cat "$(tpm_dir "$n")/swtpm.pid")")
  printf -v "TPM_TCTI_$n" '%s' "$tcti"
}

# reboot_tpm N: an orderly power cycle (PCRs back to zero). No citadeld may
# be connected to it: swtpm serves one connection at a time.
reboot_tpm() { "$SWTPM_TEST_SERVER" reboot "$(tpm_dir "$1")" || fail "rebooting TPM $1 failed"; }

# The TPM variants of provision_device / device_id / start_device: device N
# uses TPM N. provision_tpm_device prints the device id citadeld reports.
provision_tpm_device() {
  "$BIN/citadeld" provision --rot tpm2 --tcti "$(tpm_tcti "$1")" --state "$(device_dir "$1")" \
    --tpm-ek-chain "$TPM_VENDOR_CA/issuercert.pem" 2>>"$WORK/provision-$1.log"
}
tpm_device_id() { "$BIN/citadeld" id --rot tpm2 --tcti "$(tpm_tcti "$1")" --state "$(device_dir "$1")" 2>/dev/null; }
start_tpm_device() {
  local n=$1; shift
  start_device "$n" --rot tpm2 --tcti "$(tpm_tcti "$n")" "$@"
}

# Packs the thermostat sample for the running broker (start_broker), signs
# it with the tenant's publisher key ($WORK/keys) and installs and starts it
# on device N. Needs ROOT and TENANT_ID.
install_thermostat() {
  CITADEL_BIN_DIR="$BIN" "$ROOT/scripts/pack-sample" thermostat "$WORK/thermostat-img" \
    --set TENANT="$TENANT_ID" --set BROKER_HOST=127.0.0.1 --set BROKER_PORT="$BROKER_PORT" --set INTERVAL=1 \
    --file "$WORK/broker-ca.pem:etc/broker-ca.pem" --key "$WORK/keys/publisher.key" -o "$WORK/thermostat.img" \
    >/dev/null
  "$BIN/citadel" device app install "$WORK/thermostat.img" --device "$(device_dir "$1")" --json >"$WORK/install.json" \
    || fail "installing the signed thermostat on device $1 failed: $(cat "$WORK/install.json")"
}

# publish_os_update: the repository key ceremony, a 256 KiB OS 2.0.0 signed
# into the image repository, GROUP_ID on the retail feed, and a deployment
# of the OS to 100 % of that feed. Sets OS_V2 and DEPLOYMENT.
publish_os_update() {
  "$BIN/citadel" repo init --keys "$WORK/repo-keys" --json >"$WORK/repo-init.json" \
    || fail "repo init failed: $(cat "$WORK/repo-init.json")"
  python3 -c "import random; open('$WORK/os-2.img', 'wb').write(random.Random(2).randbytes(256 << 10))"
  OS_V2=$("$BIN/citadel" image upload "$WORK/os-2.img" --os --name citadel-os --version 2.0.0 --json \
    | json 'd["target_name"]')
  "$BIN/citadel" repo publish "$OS_V2" --keys "$WORK/repo-keys" --json >/dev/null || fail "publishing $OS_V2 failed"
  "$BIN/citadel" device-group update-settings "$GROUP_ID" --os-feed retail --json >/dev/null
  DEPLOYMENT=$("$BIN/citadel" deployment create --os-feed retail --images "$OS_V2" --json | json 'd["id"]')
}

# ---- Replicas behind HAProxy (issue 7, acceptance 2) ----
# Several citadel-server replicas sharing SERVER_DATA (master key, service
# CA and TLS identity, blobs, manufacturer CAs) and the store in
# DATABASE_ARGS, behind one HAProxy in TCP mode (TLS passthrough).
HAPROXY_TEST_SERVER="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/haproxy-test-server"
HAPROXY_DIR="$WORK/haproxy"

replica_health() { curl -sf --max-time 2 --cacert "$SERVER_DATA/service-ca.pem" "https://127.0.0.1:$1/v1/health"; }

# start_replica N PORT [ARGS...]: replica N on 127.0.0.1:PORT (log:
# WORK/replica-N.log, appended across restarts); sets REPLICA_PID_N and
# returns once it answers /v1/health.
start_replica() {
  local n=$1 port=$2; shift 2
  "$BIN/citadel-server" --listen "127.0.0.1:$port" --data "$SERVER_DATA" "${DATABASE_ARGS[@]}" \
    --trust-manufacturer-ca "$WORK/manufacturer/manufacturer-ca.pem" "$@" >>"$WORK/replica-$n.log" 2>&1 &
  PIDS+=($!)
  printf -v "REPLICA_PID_$n" '%s' "$!"
  wait_until 30 "replica $n health on port $port" replica_health "$port"
}

# start_haproxy NAME:PORT...: HAProxy on 127.0.0.1:HAPROXY_PORT (set here;
# HAPROXY_URL too) balancing the replicas round-robin in TCP mode. Health
# checks are HTTP over TLS (GET /v1/health, status 200, service CA not
# verified: HAProxy only asks "alive?") every 250 ms; 3 failures take a
# replica out (a dead one within ~1 s), 2 successes bring it back. A
# refused connection is retried up to 3 times, each on another replica
# (redispatch). The admin socket is HAPROXY_DIR/admin.sock (haproxy_state).
start_haproxy() {
  HAPROXY_PORT=$(free_port)
  HAPROXY_URL="https://127.0.0.1:$HAPROXY_PORT"
  local config="$WORK/haproxy.cfg" server
  {
    printf 'global\n  maxconn 8000\n  stats socket %s/admin.sock mode 600 level admin\n' "$HAPROXY_DIR"
    printf 'defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n'
    printf '  timeout check 3s\n  retries 3\n  option redispatch 1\n'
    printf 'frontend citadel\n  bind 127.0.0.1:%s\n  default_backend replicas\n' "$HAPROXY_PORT"
    printf 'backend replicas\n  balance roundrobin\n  option httpchk\n'
    printf '  http-check send meth GET uri /v1/health ver HTTP/1.1 hdr Host 127.0.0.1\n'
    printf '  http-check expect status 200\n'
    printf '  default-server check check-ssl verify none inter 250ms fall 3 rise 2\n'
    for server in "$@"; do printf '  server %s 127.0.0.1:%s\n' "${server%%:*}" "${server#*:}"; done
  } >"$config"
  local pid
  pid=$("$HAPROXY_TEST_SERVER" start "$HAPROXY_DIR" "$config") || fail "HAProxy did not start"
  PIDS+=("$pid")
  HAPROXY_PID=$pid
}

# haproxy_state NAME: the replica's state in HAProxy's eyes (UP, DOWN, ...).
# haproxy_sessions NAME: connections HAProxy has sent it so far.
haproxy_stat() {
  python3 - "$HAPROXY_DIR/admin.sock" "$1" "$2" <<'EOF_PY'
import csv, io, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
print(next(r[sys.argv[3]] for r in rows if r["pxname"] == "replicas" and r["svname"] == sys.argv[2]))
EOF_PY
}
haproxy_state() { haproxy_stat "$1" status | cut -d' ' -f1; }
haproxy_sessions() { haproxy_stat "$1" stot; }

# check_sim_figures FILE DEVICES MIN_CHECK_INS STATUS: citadel-sim's --json
# (FILE; its stderr in FILE's .log sibling is quoted on failure) must show
# every device attested, claimed, updated and reported, at least
# MIN_CHECK_INS check-ins, 0 errors, and exit STATUS 0; prints the figures.
check_sim_figures() {
  local file=$1 devices=$2 min_check_ins=$3 status=$4
  [ -s "$file" ] || fail "citadel-sim printed no figures (exit $status): $(tail -5 "${file%.json}.log")"
  python3 - "$file" "$devices" "$min_check_ins" <<'EOF_PY' || fail "citadel-sim figures: $(cat "$file")"
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
min_check_ins = int(sys.argv[3])
ops = d["operations"]
problems = []
def expect(name, ok, what):
    if not ok:
        problems.append(f"{name}: {what} (got {ops[name]['count']}, errors {ops[name]['errors']})")
for name in ("attest", "claim", "update", "report"):
    expect(name, ops[name]["count"] == n, f"expected {n}")
expect("check-in", ops["check-in"]["count"] >= min_check_ins, f"expected >= {min_check_ins}")
for name, row in ops.items():
    if row["errors"] != 0:
        problems.append(f"{name}: {row['errors']} errors")
if d["errors"] != 0:
    problems.append(f"{d['errors']} errors in all: {d['first_errors']}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
for name in ("attest", "claim", "check-in", "update", "report"):
    row = ops[name]
    print(f"  {name:9} {row['count']:6} ops  {row['errors']} errors  {row['retries']:4} retries"
          f"  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  {row['per_second']:7.1f}/s")
print("  events: " + ", ".join(f"{k} {v}" for k, v in d["events"].items() if v) + f"; {d['seconds']:.1f} s")
EOF_PY
  [ "$status" = 0 ] || fail "citadel-sim exited with $status although its figures show no error"
}
