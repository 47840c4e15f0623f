#!/usr/bin/env bash
# Failure reporting, end to end (issue 5, acceptance 1 and 2). A sample app
# that dereferences a null pointer (samples/crashy), packed with its symbol
# file and deployed through the update service to 3 real citadeld devices,
# crashes 5 times on each: the service shows exactly one issue, count 15, 3
# devices, its top frame symbolized to the right function and line. Then
# v2 crashes once with the same bug and once with another (divide by zero):
# two issues, the first with both versions. Resolved, then v3 crashes with
# the first bug again: the issue reopens as a regression. Last, a device
# "loses power" (killed, and back with another boot id) and another's
# runtime dies on the same boot: an unplanned reboot and a runtime restart.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEVICES=3
CRASHY=7c1e9d2a-3b4f-4e8a-9c5d-2f6a8b0e1d37

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 1
setup_tenant "Crash Maker"
"$BIN/citadel" publisher-key create --out "$WORK/keys" >/dev/null
"$BIN/citadel" publisher-key register "$WORK/keys/publisher.pem" --name release --json >/dev/null
"$BIN/citadel" repo init --keys "$WORK/repo-keys" --json >"$WORK/repo-init.json" \
  || fail "repo init failed: $(cat "$WORK/repo-init.json")"

# release VERSION BUGS CRASHES: packs crashy VERSION (with its symbol file),
# uploads both, publishes and deploys it to the group; prints the deployment id.
release() {
  CITADEL_BIN_DIR="$BIN" "$ROOT/scripts/pack-sample" crashy "$WORK/crashy-$1" \
    --set VERSION="$1" --set BUG="$2" --set CRASHES="$3" --set CRASH_AFTER=3 \
    --key "$WORK/keys/publisher.key" -o "$WORK/crashy-$1.img" --symbols "$WORK/crashy-$1.sym" >/dev/null \
    || fail "packing crashy $1 failed"
  [ -s "$WORK/crashy-$1.sym" ] || fail "no symbol file for crashy $1"
  local uploaded target
  uploaded=$("$BIN/citadel" image upload "$WORK/crashy-$1.img" --json) || fail "upload of $1 failed: $uploaded"
  target=$(json 'd["target_name"]' <<<"$uploaded")
  "$BIN/citadel" repo publish "$target" --keys "$WORK/repo-keys" --json >/dev/null || fail "publishing $target failed"
  "$BIN/citadel" deployment create --device-group "$GROUP_ID" --images "$target" --json | json 'd["id"]'
}

# Virtual devices take their boot id from a file (a "reboot" is a restart of citadeld).
run_device() {
  start_device "$1" --unclaimed-retry 1s --check-in-interval 1s --board "$ROOT/boards/simulated.json" \
    --update-trial-seconds 2 --boot-id-file "$WORK/boot-id-$1"
}
for n in $(seq 1 "$DEVICES"); do
  provision_device "$n"
  cat /proc/sys/kernel/random/uuid >"$WORK/boot-id-$n"
  run_device "$n"
done
for n in $(seq 1 "$DEVICES"); do
  wait_until 30 "device $n seen by the service" bash -c "[ -f '$(device_dir "$n")/status.json' ]"
  claim "$n"
done
for n in $(seq 1 "$DEVICES"); do wait_until 60 "device $n attested" is_attested "$n"; done
pass "$DEVICES devices attested in group $GROUP_ID"

issues() { "$BIN/citadel" issue list --json; }
# issue_field ERROR_CODE EXPR: EXPR of the issue with that error code ("" when none).
issue_field() {
  issues | python3 -c "
import json, sys
d = [i for i in json.load(sys.stdin)['issues'] if i['error_code'] == '$1']
print(($2) if d else '')"
}
count_is() { [ "$(issue_field "$1" "d[0]['count']")" = "$2" ]; }

# --- 1. v1: a null dereference, 5 crashes on each of 3 devices.
release 1.0.0 null 5 >/dev/null
wait_until 240 "one SIGSEGV issue with count 15" count_is SIGSEGV 15
issues >"$WORK/issues-1.json"
[ "$(json 'len(d["issues"])' <"$WORK/issues-1.json")" = 1 ] || fail "expected exactly one issue: $(cat "$WORK/issues-1.json")"
NULL_ISSUE=$(issue_field SIGSEGV "d[0]['id']")
"$BIN/citadel" issue show "$NULL_ISSUE" --json >"$WORK/issue-null.json"
[ "$(json 'd["device_count"]' <"$WORK/issue-null.json")" = 3 ] || fail "the issue does not count 3 devices"
[ "$(json 'd["frames"][0]["function"]' <"$WORK/issue-null.json")" = ReadSensorConfig ] \
  || fail "top frame is not ReadSensorConfig: $(json 'd["frames"][:3]' <"$WORK/issue-null.json")"
NULL_LINE=$(grep -n 'CRASH: null' "$ROOT/samples/crashy/sensor_config.c" | cut -d: -f1)
[ "$(json 'd["frames"][0]["line"]' <"$WORK/issue-null.json")" = "$NULL_LINE" ] \
  || fail "top frame line is not sensor_config.c:$NULL_LINE: $(json 'd["frames"][0]' <"$WORK/issue-null.json")"
"$BIN/citadel" issue show "$NULL_ISSUE"
pass "15 crashes on 3 devices: one issue, count 15, 3 devices, top frame ReadSensorConfig at sensor_config.c:$NULL_LINE"

# --- 2. v2: the same bug once more and a second bug (divide by zero) once, on each device.
release 2.0.0 null,divide 2 >/dev/null
wait_until 240 "the SIGSEGV issue counts 18" count_is SIGSEGV 18
wait_until 60 "a SIGFPE issue with count 3" count_is SIGFPE 3
[ "$(json 'len(d["issues"])' < <(issues))" = 2 ] || fail "expected two issues: $(issues)"
[ "$(issue_field SIGSEGV "','.join(sorted(d[0]['versions']))")" = "1.0.0,2.0.0" ] \
  || fail "the SIGSEGV issue does not list both versions: $(issues)"
[ "$(issue_field SIGFPE "','.join(d[0]['versions'])")" = "2.0.0" ] || fail "the SIGFPE issue is not v2 only"
pass "two bugs in one app: two issues; the same bug in 1.0.0 and 2.0.0: one issue listing both versions"

# --- 3. resolve, then v3 crashes with the first bug: a regression.
"$BIN/citadel" issue resolve "$NULL_ISSUE" --json >/dev/null
[ "$(issue_field SIGSEGV "d[0]['state']")" = resolved ] || fail "the issue is not resolved"
release 3.0.0 null 1 >/dev/null
regressed() { [ "$(issue_field SIGSEGV "d[0]['state'] + ':' + str(d[0]['regression'])")" = "open:True" ]; }
wait_until 240 "the resolved issue reopens as a regression" regressed
[ "$(issue_field SIGSEGV "'3.0.0' in d[0]['versions']")" = True ] || fail "3.0.0 is not among the versions"
"$BIN/citadel" issue list
pass "resolved in 2.0.0, crashing again in 3.0.0: reopened as a regression"

# --- 4. power loss on device 1 (another boot id), a runtime crash on device 2 (same boot).
kill -KILL "$DEVICE_PID_1" "$DEVICE_PID_2"
wait "$DEVICE_PID_1" "$DEVICE_PID_2" 2>/dev/null || true
cat /proc/sys/kernel/random/uuid >"$WORK/boot-id-1"
run_device 1
run_device 2
wait_until 60 "an unplanned-reboot issue (power-loss)" count_is power-loss 1
wait_until 60 "a runtime-restart issue" count_is runtime-restart 1
[ "$(issue_field power-loss "d[0]['class']")" = unplanned-reboot ] || fail "power-loss is not an unplanned reboot"
[ "$(issue_field runtime-restart "d[0]['class']")" = runtime-error ] || fail "runtime-restart is not a runtime error"
pass "a power cut (new boot id, no clean stop) and a runtime killed on the same boot are reported as such"
echo "1 passed, 0 failed"
