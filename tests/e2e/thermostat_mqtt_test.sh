#!/usr/bin/env bash
# The "any cloud" path, end to end: a tenant registers a publisher key with
# the service; an attested device learns it at check-in; the signed
# thermostat sample is installed on the device and runs in its sandbox; it
# reads the simulated I2C temperature sensor and publishes readings over
# MQTT/TLS to a real Mosquitto broker that trusts only the tenant CA, with
# the device certificate (its key stays in citadeld: the app signs through
# applibs). A variant pointed at a broker address its manifest does not list
# is refused by the runtime (EACCES, reported) and never reaches that broker.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 1
setup_tenant "Thermo Maker"
provision_device 1

# The tenant's publisher key, registered with the service.
"$BIN/citadel" publisher-key create --out "$WORK/keys" >/dev/null
"$BIN/citadel" publisher-key register "$WORK/keys/publisher.pem" --name release --json >/dev/null
pass "publisher key registered with the service"

start_device 1 --unclaimed-retry 1s --check-in-interval 1s --board "$ROOT/boards/simulated.json"
wait_until 30 "device 1 seen by the service" bash -c "[ -f '$(device_dir 1)/status.json' ] && grep -q unclaimed '$(device_dir 1)/status.json'"
claim 1
wait_until 60 "device 1 attested" is_attested 1
wait_until 30 "device 1 learnt the publisher key at check-in" \
  grep -q "BEGIN PUBLIC KEY" "$(device_dir 1)/trust/publisher-keys.json"
pass "device attested and learnt the tenant's publisher key"

start_broker

# A subscriber with a client certificate of its own (the device's, read
# from its software RoT: the test is root on the "device").
DEVICE_ID=$(device_id 1)
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/broker-ca.pem" \
  --cert "$(device_dir 1)/certs/device.pem" --key "$(device_dir 1)/rot/tls.key" -i subscriber \
  -t "devices/+/temperature" -C 3 -W 60 >"$WORK/readings.txt" 2>"$WORK/sub.log" &
SUB_PID=$!
PIDS+=("$SUB_PID")
sleep 0.5

# The thermostat, signed with the tenant key, installed and started.
install_thermostat 1
pass "signed thermostat installed and started"

wait "$SUB_PID" || fail "no 3 readings arrived at the broker within 60 s (thermostat log: $(
  "$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 20 2>&1))"
[ "$(wc -l <"$WORK/readings.txt")" -eq 3 ] || fail "expected 3 readings, got: $(cat "$WORK/readings.txt")"
python3 - "$WORK/readings.txt" "$DEVICE_ID" <<'EOF' || fail "readings are not what the sensor says"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
for line in lines:
    r = json.loads(line)
    assert abs(r["celsius"] - 21.5) < 0.01, r   # the simulated TMP102's default
    assert r["device"] == sys.argv[2], r        # the device certificate's CN
print("readings:", lines)
EOF
grep -q "$DEVICE_ID" "$WORK/mosquitto.log" \
  || fail "the broker did not see the device certificate as the client identity"
"$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 256 >"$WORK/thermostat-app.log" 2>&1
grep -q "published seq 3" "$WORK/thermostat-app.log" || fail "the app's log does not show its publishes: $(cat "$WORK/thermostat-app.log")"
pass "3 readings (21.5 C) arrived at Mosquitto over TLS, authenticated by the device certificate"

# The key never left citadeld: the app's log and tree hold no private key.
# (Read whole, then searched: with pipefail, `logs | grep -q` can fail when grep stops early.)
"$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 256 >"$WORK/thermostat-app.log" 2>&1
if grep -q "PRIVATE KEY" "$WORK/thermostat-app.log"; then
  fail "a private key reached the app's log"
fi

# A thermostat told to publish to a broker address its manifest does not
# list (127.0.0.2, where Mosquitto also listens) is refused by the runtime.
"$BIN/citadel" device app remove Thermostat --device "$(device_dir 1)" --json >/dev/null
before=$(grep -c "New connection from" "$WORK/mosquitto.log" || true)
sed -e "s/@TENANT@/$TENANT_ID/" -e "s/\"--broker-host\", \"@BROKER_HOST@\"/\"--broker-host\", \"127.0.0.2\"/" \
  -e "s/@BROKER_HOST@/127.0.0.1/" -e "s/@BROKER_PORT@/$BROKER_PORT/" -e "s/@INTERVAL@/1/" \
  "$ROOT/samples/thermostat/app_manifest.json.in" >"$WORK/rogue-manifest.json"
grep -q '"127.0.0.2"' "$WORK/rogue-manifest.json" || fail "test bug: the rogue manifest was not made"
CITADEL_BIN_DIR="$BIN" "$ROOT/scripts/pack-sample" thermostat "$WORK/rogue-img" --manifest "$WORK/rogue-manifest.json" \
  --file "$WORK/broker-ca.pem:etc/broker-ca.pem" --key "$WORK/keys/publisher.key" -o "$WORK/rogue.img" >/dev/null
"$BIN/citadel" device app install "$WORK/rogue.img" --device "$(device_dir 1)" --json >/dev/null
logs_mention_eacces() {
  local logs
  logs=$("$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 256 2>&1) || return 1
  grep -q "127.0.0.2" <<<"$logs"
}
wait_until 30 "the runtime refused and reported the connection to 127.0.0.2" logs_mention_eacces
"$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 256 >"$WORK/rogue-app.log" 2>&1 || true
cat "$WORK/rogue-app.log"
grep -q "violation.*connect.*127.0.0.2" "$WORK/rogue-app.log" \
  || fail "no connect violation naming 127.0.0.2 in the app's log: $(cat "$WORK/rogue-app.log")"
after=$(grep -c "New connection from" "$WORK/mosquitto.log" || true)
[ "$before" = "$after" ] || fail "the broker saw a connection from the rogue app"
pass "a broker address not in AllowedConnections is refused and reported; the broker never saw it"
echo "1 passed, 0 failed"
