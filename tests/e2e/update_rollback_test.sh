#!/usr/bin/env bash
# Automatic rollback (issue 4, acceptance 4), against a real citadel-server:
#  1. an app update that crash-loops (thermostat 2.0.0 released without the
#     I2C capability it needs: it exits at start) returns to the previous
#     version by itself, and the deployment shows the failure;
#  2. an OS update whose runtime never reports healthy: the device writes
#     slot B, arms a trial and reboots into it; there its runtime never
#     reaches the service (this test starts it with a dead service address,
#     as a broken network stack in the new OS would) and a watchdog (this
#     test) power-cycles it; after the trial's boot tries the boot control
#     returns to slot A on its own, the runtime there reports the failure,
#     and the deployment shows it.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THERMOSTAT=5b2f3c1e-8a47-4d2b-9e6f-0c3a7d5e9b14
DEVICE="$(device_dir 1)"
SLOTS="$WORK/devices/slots-1"

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 1
setup_tenant "Rollback Maker"
"$BIN/citadel" publisher-key create --out "$WORK/keys" >/dev/null
"$BIN/citadel" publisher-key register "$WORK/keys/publisher.pem" --name release --json >/dev/null
"$BIN/citadel" repo init --keys "$WORK/repo-keys" --json >/dev/null || fail "repo init failed"

# pack VERSION [MANIFEST]: a signed thermostat (no broker runs: it retries,
# which is healthy).
pack() {
  local manifest=()
  [ $# -gt 1 ] && manifest=(--manifest "$2")
  CITADEL_BIN_DIR="$BIN" "$ROOT/scripts/pack-sample" thermostat "$WORK/thermostat-$1" "${manifest[@]}" \
    --set TENANT="$TENANT_ID" --set BROKER_HOST=127.0.0.1 --set BROKER_PORT=9 --set INTERVAL=1 \
    --set VERSION="$1" --file "$SERVER_DATA/service-ca.pem:etc/broker-ca.pem" --key "$WORK/keys/publisher.key" \
    -o "$WORK/thermostat-$1.img" >/dev/null
}
pack 1.0.0
python3 - "$ROOT/samples/thermostat/app_manifest.json.in" >"$WORK/broken.json.in" <<'EOF'
import sys
text = open(sys.argv[1]).read()
assert '"I2cMaster": ["I2C0"],' in text
print(text.replace('"I2cMaster": ["I2C0"],', ''))
EOF
pack 2.0.0 "$WORK/broken.json.in"
python3 -c "
import random, sys
open('$WORK/os-1.img', 'wb').write(random.Random(1).randbytes(1 << 20))
open('$WORK/os-2.img', 'wb').write(random.Random(2).randbytes(1 << 20))"

upload() { "$BIN/citadel" image upload "$@" --json | json 'd["target_name"]'; }
APP_V1=$(upload "$WORK/thermostat-1.0.0.img")
APP_V2=$(upload "$WORK/thermostat-2.0.0.img")
OS_V2=$(upload "$WORK/os-2.img" --os --name citadel-os --version 2.0.0)
"$BIN/citadel" repo publish "$APP_V1" "$APP_V2" "$OS_V2" --keys "$WORK/repo-keys" --json >/dev/null \
  || fail "publishing failed"

provision_device 1
mkdir -p "$SLOTS"
cp "$WORK/os-1.img" "$SLOTS/slot-A.img"
DEVICE_ARGS=(--os-version 1.0.0 --os-slots "$SLOTS" --board "$ROOT/boards/simulated.json"
  --unclaimed-retry 1s --check-in-interval 1s --update-trial-seconds 3)
"$BIN/citadeld" run --state "$DEVICE" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  "${DEVICE_ARGS[@]}" --once >>"$WORK/device-1.log" 2>&1 || [ $? -eq 3 ] || fail "first start failed"
claim 1

# run_device [ARGS...]: one boot until the update pass settled (or until the
# 60 s watchdog); prints the exit status.
run_device() {
  local status=0
  timeout 60 "$BIN/citadeld" run --state "$DEVICE" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
    "${DEVICE_ARGS[@]}" --update-once "$@" >>"$WORK/device-1.log" 2>&1 || status=$?
  echo "$status"
}
app_record() { json "d['apps']['$THERMOSTAT']['$1']" <"$DEVICE/apps/state.json"; }
failed_is() { [ "$("$BIN/citadel" deployment show "$1" --json | json "d['progress']['failed']")" = "$2" ]; }

# ---- 1. the crash-looping app --------------------------------------------------
"$BIN/citadel" deployment create --device-group "$GROUP_ID" --images "$APP_V1" --json >/dev/null
[ "$(run_device)" = 0 ] || fail "installing thermostat 1.0.0 failed"
[ "$(app_record version)" = 1.0.0 ] || fail "thermostat 1.0.0 is not installed"
D_APP=$("$BIN/citadel" deployment create --device-group "$GROUP_ID" --images "$APP_V2" --json | json 'd["id"]')
[ "$(run_device)" = 0 ] || fail "the update pass of the broken 2.0.0 did not settle"
[ "$(app_record version)" = 1.0.0 ] || fail "the device kept the crash-looping 2.0.0 ($(app_record version))"
[ "$(sha256sum <"$DEVICE/apps/$THERMOSTAT/image.img" | cut -d' ' -f1)" = "$(sha256sum <"$WORK/thermostat-1.0.0.img" | cut -d' ' -f1)" ] \
  || fail "the installed image is not thermostat 1.0.0"
wait_until 20 "deployment $D_APP shows the failure" failed_is "$D_APP" 1
"$BIN/citadel" deployment show "$D_APP"
# It does not try the same broken version again.
[ "$(run_device)" = 0 ] && [ "$(app_record version)" = 1.0.0 ] || fail "the device retried the failed version"
pass "a crash-looping app update returned to 1.0.0 by itself; the deployment shows 1 failed"

# ---- 2. the OS whose runtime never becomes healthy ---------------------------------
"$BIN/citadel" device-group update-settings "$GROUP_ID" --os-feed retail --json >/dev/null
D_OS=$("$BIN/citadel" deployment create --os-feed retail --images "$OS_V2" --json | json 'd["id"]')
[ "$(run_device)" = 75 ] || fail "the OS update did not ask for a reboot into its trial slot"
cmp -s "$SLOTS/slot-B.img" "$WORK/os-2.img" || fail "slot B does not hold OS 2"
[ "$(json 'd["trial"]["slot"]' <"$DEVICE/boot/boot-state.json")" = B ] || fail "no trial of slot B armed"
pass "OS 2 written to slot B and its trial armed"

# Boots of the new OS: its runtime cannot reach the service; the watchdog
# power-cycles it (SIGKILL after 4 s). Each start takes one boot try.
DEAD_PORT=$(free_port)
for boot in 1 2 3 4 5; do
  timeout -s KILL 4 "$BIN/citadeld" run --state "$DEVICE" --server "https://127.0.0.1:$DEAD_PORT" \
    --server-ca "$SERVER_DATA/service-ca.pem" "${DEVICE_ARGS[@]}" >>"$WORK/device-1.log" 2>&1 || true
  booted=$(json 'd["booted"] + (" (trial)" if d.get("trial") else "")' <"$DEVICE/boot/boot-state.json")
  if [ "$booted" = A ]; then
    echo "boot $boot: the boot control chose slot A by itself (the trial's tries ran out)"
    break
  fi
  echo "boot $boot: slot $booted; the runtime never reported healthy; the watchdog cut the power"
done
python3 -c "import json; s = json.load(open('$DEVICE/boot/boot-state.json')); assert s['booted'] == 'A' and not s.get('trial'), s" \
  || fail "the boot control did not return to slot A: $(cat "$DEVICE/boot/boot-state.json")"
pass "after the trial's boot tries the boot control returned to slot A on its own"

# Back on slot A with a working network: the failure is reported.
[ "$(run_device)" = 0 ] || fail "the device on slot A did not settle"
wait_until 20 "deployment $D_OS shows the failure" failed_is "$D_OS" 1
"$BIN/citadel" deployment show "$D_OS"
[ "$("$BIN/citadel" device show "$(device_id 1)" --json | json 'd["os_version"]')" = 1.0.0 ] \
  || fail "the service does not see OS 1.0.0 on the device"
pass "the device runs OS 1.0.0 again and the deployment shows 1 failed"
echo "1 passed, 0 failed"
