#!/usr/bin/env bash
# Power cuts during updates (issue 4, acceptance 3). A real device (citadeld,
# software RoT, file A/B boot control and file OS slots, sandboxed apps)
# updates an app and then its OS from a real citadel-server. The update
# client and the app store call update::FaultPoint at every durable step and
# every chunk they download or write (src/update/fault.hpp); this test
# first runs each update once counting the points it crosses, then, for
# each chosen point, restores the device to its state before the update,
# kills the runtime with SIGKILL exactly at that point (and every app
# process with it, as a power cut would), checks that what is installed is
# still a valid signed version, and "reboots" (starts citadeld again: on the
# file boot backend every start is a power-on) until the update completes.
#
# Points are chosen deterministically: every point whose label differs from
# the previous one, plus evenly spaced chunk points, up to
# CITADEL_POWER_CUT_BUDGET per update (default 300: every point of both
# updates, about 250). Prints the count of
# points tried and the failures; any failure fails the test.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUDGET=${CITADEL_POWER_CUT_BUDGET:-300}
BLINK=1689d8b2-c835-2e27-27ad-e894d6d15fa9
DEVICE="$(device_dir 1)"
SLOTS="$WORK/devices/slots-1"

make_manufacturer
# The device boots hundreds of times in a few minutes, far beyond what the
# default per-device rate limit (2 requests/s, burst 60) is sized for; the
# limit itself is tested in tests/server/backpressure_test.cpp.
start_server --unclaimed-retry 1 --check-in-interval 1 --device-rate 200 --device-burst 2000
setup_tenant "Power Cut Maker"
"$BIN/citadel" publisher-key create --out "$WORK/keys" >/dev/null
"$BIN/citadel" publisher-key register "$WORK/keys/publisher.pem" --name release --json >/dev/null
"$BIN/citadel" repo init --keys "$WORK/repo-keys" --json >/dev/null || fail "repo init failed"

# Blink 1.0.0 and 2.0.0 (the sample's manifest with a Version).
for version in 1.0.0 2.0.0; do
  python3 - "$ROOT/samples/blink/app_manifest.json" "$version" >"$WORK/blink-$version.json" <<'EOF'
import json, sys
manifest = json.load(open(sys.argv[1]))
manifest["Version"] = sys.argv[2]
print(json.dumps(manifest, indent=2))
EOF
  CITADEL_BIN_DIR="$BIN" "$ROOT/scripts/pack-sample" blink "$WORK/blink-$version" --manifest "$WORK/blink-$version.json" \
    --key "$WORK/keys/publisher.key" -o "$WORK/blink-$version.img" >/dev/null
done
# OS images: 12 MiB (a point per 64 KiB downloaded, per 1 MiB written to
# the slot), v2 differs from v1 in a few places.
python3 - "$WORK" <<'EOF'
import random, sys
data = bytearray(random.Random(4).randbytes(12 << 20))
open(sys.argv[1] + "/os-1.img", "wb").write(data)
for offset in (4096, 1 << 20, 3 << 20):
    data[offset:offset + 64] = b"v2" * 32
open(sys.argv[1] + "/os-2.img", "wb").write(data)
EOF
sha() { sha256sum "$1" | cut -d' ' -f1; }

upload() { "$BIN/citadel" image upload "$@" --json | json 'd["target_name"]'; }
APP_V1=$(upload "$WORK/blink-1.0.0.img")
APP_V2=$(upload "$WORK/blink-2.0.0.img")
OS_V2=$(upload "$WORK/os-2.img" --os --name citadel-os --version 2.0.0)
"$BIN/citadel" repo publish "$APP_V1" "$APP_V2" "$OS_V2" --keys "$WORK/repo-keys" --json >/dev/null \
  || fail "publishing failed"
pass "blink 1.0.0/2.0.0 and OS 2.0.0 uploaded and signed"

# The device: OS 1 in slot A, blink 1.0.0 installed through a deployment.
provision_device 1
mkdir -p "$SLOTS"
cp "$WORK/os-1.img" "$SLOTS/slot-A.img"
RUN_ARGS=(run --state "$DEVICE" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem"
  --os-version 1.0.0 --os-slots "$SLOTS" --board "$ROOT/boards/simulated.json"
  --unclaimed-retry 1s --check-in-interval 1s --update-trial-seconds 1)
"$BIN/citadeld" "${RUN_ARGS[@]}" --once >>"$WORK/device-1.log" 2>&1 || [ $? -eq 3 ] || fail "first start failed"
claim 1
"$BIN/citadel" deployment create --device-group "$GROUP_ID" --images "$APP_V1" --json >/dev/null
timeout 120 "$BIN/citadeld" "${RUN_ARGS[@]}" --update-once >>"$WORK/device-1.log" 2>&1 \
  || fail "installing blink 1.0.0 failed (status $?)"
TREE="citadel-$("$BIN/citadeld" id --state "$DEVICE" | cut -c1-16)"

# ---- helpers -----------------------------------------------------------------

# Every process of the device's apps gets SIGKILL (a power cut ends them
# with the runtime). cgroup v1 (pids hierarchy) or v2.
kill_apps() {
  local tries pids base
  for tries in $(seq 1 50); do
    pids=$(for base in /sys/fs/cgroup/pids /sys/fs/cgroup /sys/fs/cgroup/unified; do
      cat "$base/$TREE"/*/cgroup.procs 2>/dev/null || true
    done | sort -u)
    [ -z "$pids" ] && return 0
    kill -9 $pids 2>/dev/null || true
    sleep 0.05
  done
  fail "the device's apps did not die"
}

snapshot() { rm -rf "$WORK/base-$1"; mkdir -p "$WORK/base-$1"; cp -a "$DEVICE" "$SLOTS" "$WORK/base-$1/"; }
restore() {
  kill_apps
  rm -rf "$DEVICE" "$SLOTS"
  cp -a "$WORK/base-$1/$(basename "$DEVICE")" "$DEVICE"
  cp -a "$WORK/base-$1/$(basename "$SLOTS")" "$SLOTS"
}

# run_device [ENV...]: one boot of the device until its update pass
# settled; prints the exit status (0 done, 75 reboot requested, 137 killed).
run_device() {
  local status=0
  env "$@" timeout 120 "$BIN/citadeld" "${RUN_ARGS[@]}" --update-once >"$WORK/boot.log" 2>&1 || status=$?
  kill_apps
  cat "$WORK/boot.log" >>"$WORK/device-1.log"
  echo "$status"
}

# valid_install: after a boot, what the device holds is a whole, signed
# version — the app's recorded image is blink 1.0.0 or 2.0.0 byte for byte
# and it was started in that boot; the booted slot holds OS 1 or OS 2.
valid_install() {
  python3 - "$DEVICE" "$SLOTS" "$BLINK" "$(sha "$WORK/blink-1.0.0.img")" "$(sha "$WORK/blink-2.0.0.img")" \
    "$(sha "$WORK/os-1.img")" "$(sha "$WORK/os-2.img")" <<'EOF'
import hashlib, json, os, sys
device, slots, blink, app1, app2, os1, os2 = sys.argv[1:]
def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
state = json.load(open(os.path.join(device, "apps", "state.json")))
app = state["apps"].get(blink)
assert app, "blink is not installed"
image = os.path.join(device, "apps", blink, "image.img")
assert sha(image) in (app1, app2), "the app image is neither signed version"
assert app["image_sha256"] == sha(image), "the app record does not match its image"
boot = json.load(open(os.path.join(device, "boot", "boot-state.json")))
assert sha(os.path.join(slots, "slot-%s.img" % boot["booted"])) in (os1, os2), "the booted slot holds no valid OS"
EOF
  grep -q "app started.*$BLINK" "$WORK/boot.log" || { echo "blink was not started in this boot" >&2; return 1; }
}

# completed KIND: the update of KIND (app|os) is in place and committed.
completed() {
  python3 - "$1" "$DEVICE" "$SLOTS" "$BLINK" "$(sha "$WORK/blink-2.0.0.img")" "$(sha "$WORK/os-2.img")" <<'EOF'
import hashlib, json, os, sys
kind, device, slots, blink, app2, os2 = sys.argv[1:]
def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
state = json.load(open(os.path.join(device, "apps", "state.json")))
app = state["apps"][blink]
if kind == "app":
    assert app["image_sha256"] == app2 and app["version"] == "2.0.0", "blink 2.0.0 is not installed"
    assert not state.get("trials"), "an app trial is still open"
else:
    boot = json.load(open(os.path.join(device, "boot", "boot-state.json")))
    assert not boot.get("trial"), "the OS trial is not committed"
    assert boot["booted"] == boot["primary"], "the device does not run its primary slot"
    assert sha(os.path.join(slots, "slot-%s.img" % boot["primary"])) == os2, "the primary slot is not OS 2"
EOF
}

# recover KIND [check]: reboots until the update is complete (bounded);
# with "check", the first boot must come back with a valid install.
recover() {
  local boots status
  for boots in 1 2 3 4 5 6; do
    status=$(run_device)
    if [ "$boots" = 1 ] && [ "${2:-}" = check ] && ! valid_install; then
      echo "the first boot after the cut did not come back with a valid signed version" >&2
      return 1
    fi
    case $status in
      0) completed "$1" && return 0 ;;
      75) ;;  # reboot requested: the next start is the reboot
      *) echo "boot $boots after the cut exited $status" >&2; return 1 ;;
    esac
  done
  echo "not complete after 6 boots" >&2
  return 1
}

# count_points KIND: runs the update from the snapshot with counting on and
# writes WORK/points-KIND: "<boot> <point in that boot> <label>" per line.
count_points() {
  restore "$1"
  : >"$WORK/points-$1"
  local boot status
  for boot in 1 2 3 4; do
    rm -f "$WORK/count"
    status=$(run_device CITADEL_FAULT_COUNT="$WORK/count")
    [ -f "$WORK/count" ] && awk -v b="$boot" '{print b, NR, $0}' "$WORK/count" >>"$WORK/points-$1"
    case $status in
      0) completed "$1" || fail "the uninterrupted $1 update did not complete"; return 0 ;;
      75) ;;
      *) fail "the uninterrupted $1 update exited $status" ;;
    esac
  done
  fail "the uninterrupted $1 update did not finish in 4 boots"
}

# choose KIND: the chosen points, "<boot> <point>" per line.
choose() {
  python3 - "$WORK/points-$1" "$BUDGET" <<'EOF'
import sys
points = [line.split(" ", 2) for line in open(sys.argv[1]).read().splitlines()]
budget = int(sys.argv[2])
chosen = set()
previous = None
for i, (boot, n, label) in enumerate(points):
    if label != previous:
        chosen.add(i)       # the first point of every run of one label
        if i > 0:
            chosen.add(i - 1)  # and the last of the run before
    previous = label
chosen.add(len(points) - 1)
rest = [i for i in range(len(points)) if i not in chosen]
room = max(0, budget - len(chosen))
if rest and room:
    step = max(1, len(rest) // room)
    chosen.update(rest[::step][:room])
for i in sorted(chosen):
    print(points[i][0], points[i][1])
EOF
}

TRIED=0
FAILURES=0
# cut_at KIND BOOT POINT: one power cut and its recovery.
cut_at() {
  local kind=$1 boot=$2 point=$3 b status
  restore "$kind"
  for b in $(seq 1 $((boot - 1))); do
    status=$(run_device)
    [ "$status" = 75 ] || { echo "FAILED $kind $boot:$point: boot $b before the cut exited $status"; return 1; }
  done
  status=$(run_device CITADEL_FAULT_AT="$point")
  [ "$status" = 137 ] || { echo "FAILED $kind $boot:$point: expected a kill at the point, exit $status"; return 1; }
  recover "$kind" check || { echo "FAILED $kind $boot:$point: the update did not complete after the cut"; return 1; }
}

run_points() {
  local kind=$1 total chosen
  count_points "$kind"
  total=$(wc -l <"$WORK/points-$kind")
  choose "$kind" >"$WORK/chosen-$kind"
  chosen=$(wc -l <"$WORK/chosen-$kind")
  echo "$kind update: $total fault points across its boots; cutting power at $chosen of them"
  while read -r boot point; do
    TRIED=$((TRIED + 1))
    if ! cut_at "$kind" "$boot" "$point"; then
      FAILURES=$((FAILURES + 1))
      sed -n "$(grep -n "^$boot $point " "$WORK/points-$kind" | cut -d: -f1)p" "$WORK/points-$kind"
    fi
  done <"$WORK/chosen-$kind"
}

# ---- the app update ----------------------------------------------------------
snapshot app
"$BIN/citadel" deployment create --device-group "$GROUP_ID" --images "$APP_V2" --json >/dev/null
run_points app
APP_TRIED=$TRIED

# ---- the OS update (from the device with blink 2.0.0) -------------------------
restore app
recover app >/dev/null || fail "could not bring the device to blink 2.0.0"
snapshot os
"$BIN/citadel" device-group update-settings "$GROUP_ID" --os-feed retail --json >/dev/null
"$BIN/citadel" deployment create --os-feed retail --images "$OS_V2" --json >/dev/null
run_points os

echo "power cuts tried: $TRIED ($APP_TRIED in the app update, $((TRIED - APP_TRIED)) in the OS update); failures: $FAILURES"
[ "$FAILURES" -eq 0 ] || fail "$FAILURES of $TRIED power cuts left the device unable to recover"
[ "$TRIED" -ge 200 ] || fail "only $TRIED points tried: the updates cross fewer fault points than expected"
echo "1 passed, 0 failed"
