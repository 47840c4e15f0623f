#!/usr/bin/env bash
# Acceptance 1: a fresh server and 3 software-RoT devices -> claimed -> each
# holds a certificate that `openssl verify` accepts against the tenant chain
# and that a real Mosquitto broker requiring client certificates accepts.
source "$(dirname "$0")/lib.sh"

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 5
setup_tenant Acme

for n in 1 2 3; do provision_device $n; start_device $n --unclaimed-retry 1s --check-in-interval 5s; done
for n in 1 2 3; do
  wait_until 30 "device $n seen by the service" claim $n
done
for n in 1 2 3; do wait_until 60 "device $n attested" is_attested $n; done
pass "3 devices claimed and attested"

"$BIN/citadel" ca-certificate download -o "$WORK/tenant-chain.pem"
[ "$(grep -c 'BEGIN CERTIFICATE' "$WORK/tenant-chain.pem")" = 2 ] || fail "tenant chain should hold issuing + root CA"
for n in 1 2 3; do
  cert="$(device_dir $n)/certs/device.pem"
  openssl verify -CAfile "$WORK/tenant-chain.pem" -purpose sslclient "$cert" | grep -q ': OK$' \
    || fail "openssl verify refused device $n's certificate"
  subject=$(openssl x509 -in "$cert" -noout -subject)
  grep -q "$(device_id $n)" <<<"$subject" || fail "certificate subject does not name device $n: $subject"
  openssl x509 -in "$cert" -noout -ext subjectAltName | grep -q "citadel://tenant/$TENANT_ID/device/$(device_id $n)" \
    || fail "certificate SAN does not name tenant and device"
  start=$(date -d "$(openssl x509 -in "$cert" -noout -startdate | cut -d= -f2)" +%s)
  end=$(date -d "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)" +%s)
  lifetime=$((end - start))
  [ $lifetime -ge 86400 ] && [ $lifetime -le 87000 ] || fail "certificate lifetime is $lifetime s, want 24 h"
done
pass "openssl verify accepts all 3 certificates against the tenant chain; lifetime 24 h"

# A certificate from another CA must not verify against the tenant chain.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/rogue.key" \
  -out "$WORK/rogue.pem" -subj "/CN=$(device_id 1)" -days 1 2>/dev/null
if openssl verify -CAfile "$WORK/tenant-chain.pem" "$WORK/rogue.pem" >/dev/null 2>&1; then
  fail "a self-signed certificate verified against the tenant chain"
fi

# Mosquitto with require_certificate and the tenant chain as its CA file.
make_broker_certificate "IP:127.0.0.1"
BROKER_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOT
user root
persistence false
log_dest stdout
listener $BROKER_PORT 127.0.0.1
cafile $WORK/tenant-chain.pem
certfile $WORK/broker.pem
keyfile $WORK/broker.key
require_certificate true
use_identity_as_username true
EOT
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_until 10 "mosquitto listening" bash -c "exec 3<>/dev/tcp/127.0.0.1/$BROKER_PORT"

for n in 1 2 3; do
  mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/broker-ca.pem" \
    --cert "$(device_dir $n)/certs/device.pem" --key "$(device_dir $n)/rot/tls.key" \
    -q 1 -t "devices/$n/hello" -m "attested" -i "device-$n" \
    || fail "Mosquitto refused device $n's certificate"
done
pass "Mosquitto (require_certificate, cafile = tenant chain) accepts all 3 device certificates"

if mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/broker-ca.pem" \
    --cert "$WORK/rogue.pem" --key "$WORK/rogue.key" -q 1 -t x -m y -i rogue 2>/dev/null; then
  fail "Mosquitto accepted a certificate from outside the tenant chain"
fi
pass "Mosquitto refuses a certificate from outside the tenant chain"

# Secrets never reach a log: no private key, no API token.
for log in "$WORK"/*.log; do
  if grep -q "PRIVATE KEY" "$log" || grep -qF "$ADMIN_TOKEN" "$log" || grep -qF "$(cat "$SERVER_DATA/operator-token")" "$log"; then
    fail "a secret reached $log"
  fi
done
pass "no private key or token in any log"

listed=$("$BIN/citadel" device list --json)
[ "$(json 'len(d["devices"]) if isinstance(d, dict) else len(d)' <<<"$listed")" = 3 ] || fail "device list should show 3 devices"
echo "1 passed, 0 failed"
