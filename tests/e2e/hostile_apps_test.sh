#!/usr/bin/env bash
# The hostile-app acceptance suite (issue 3): one escape attempt per run,
#
#   tests/e2e/hostile_apps_test.sh ATTEMPT
#
# against the real runtime: `citadeld apps serve` on a fresh software-RoT
# device state, a tenant publisher key in trust/publisher-keys.json, the
# well-behaved neighbour samples/blink and the hostile app
# (tests/e2e/hostile, README.md there lists the attempts) packed and signed
# with scripts/pack-sample and installed over the development interface.
#
# Each attempt checks:
#   - the verdict line names the errno the design gives for EVERY step (an
#     ECONNREFUSED instead of EACCES means the connect reached something);
#     bombs: the runtime saw the limit (pids.events / last_exit OOM);
#   - a violation was reported when the runtime can see the attempt
#     (seccomp-notified syscalls, broker refusals); attempts the kernel
#     stops silently (other namespaces: ENOENT/ESRCH/EROFS, ENOSPC, pids
#     limit) assert the errno only;
#   - network attempts: real listeners on 127.0.0.2 / [::1] / an abstract
#     unix name in citadeld's namespace saw no connection and no datagram;
#   - the neighbour blink kept running (same pid, its toggle counter keeps
#     growing), citadeld still answers, and no RoT private key text appears
#     in citadeld's log or in any app log.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

ATTEMPT=${1:?usage: hostile_apps_test.sh ATTEMPT (see tests/e2e/hostile/README.md)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE="$WORK/device"
KEYS="$WORK/keys"
TEMPLATES="$ROOT/tests/e2e/hostile/manifests"
MARKER="citadel-hostile-marker-$$-$RANDOM$RANDOM"
VERDICT_TIMEOUT=40

[ -x "$BIN/hostile" ] || fail "$BIN/hostile is not built (target hostile)"
[ -x "$BIN/citadel-sandbox" ] || fail "$BIN/citadel-sandbox is not built"

cli() { "$BIN/citadel" device "$@" --device "$STATE"; }
new_cid() { python3 -c 'import uuid; print(uuid.uuid4())'; }
app_field() {  # app_field CID FIELD: a field of the app in `device app list --json`
  cli app list --json | python3 -c "
import json, sys
apps = [a for a in json.load(sys.stdin)['apps'] if a['component_id'] == sys.argv[1]]
print(apps[0].get(sys.argv[2], '') if apps else '')" "$1" "$2"
}
app_lines() {  # app_lines CID: the app's log text, one line each
  cli app logs "$1" -n 256 --json | python3 -c "
import json, sys
for line in json.load(sys.stdin)['lines']: print(line['text'])"
}
# app_has_line CID GREP-ARGS...: whether the app's log has a matching line.
# The log is read whole first: with pipefail, `app_lines | grep -q` fails
# whenever grep stops reading early, which would hide a match.
app_has_line() { local lines; lines=$(app_lines "$1"); grep -q "${@:2}" <<<"$lines"; }
verdict_of() { local lines; lines=$(app_lines "$1"); grep -E '^(DENIED|ESCAPED|ERROR) ' <<<"$lines" | head -n 1 || true; }
has_verdict() { [ -n "$(verdict_of "$1")" ]; }
is_running() { [ "$(app_field "$1" state)" = running ]; }
# The highest "toggle N" blink has logged.
blink_toggles() { app_lines "$BLINK_CID" | sed -n 's/.*(toggle \([0-9]*\)).*/\1/p' | sort -n | tail -n 1; }
blink_past() { local now; now=$(blink_toggles); [ -n "$now" ] && [ "$now" -gt "$1" ]; }

# ---- the device -------------------------------------------------------------
"$BIN/citadeld" provision --state "$STATE" --no-manufacturer >>"$WORK/provision.log" 2>&1
"$BIN/citadel" publisher-key create --out "$KEYS" >/dev/null
# The tenant's publisher keys as the agent stores them after a check-in
# (device/trust_store.cpp: {"publisher_keys":[{"key_id","public_key_pem"}]},
# key_id = SHA-256 of the SPKI DER); apps serve has no service to learn them from.
mkdir -p "$STATE/trust"
KEY_ID=$(openssl pkey -pubin -in "$KEYS/publisher.pem" -outform DER | sha256sum | cut -d' ' -f1)
python3 - "$KEYS/publisher.pem" "$KEY_ID" >"$STATE/trust/publisher-keys.json" <<'EOF'
import json, sys
print(json.dumps({"publisher_keys": [{"key_id": sys.argv[2], "public_key_pem": open(sys.argv[1]).read()}]}))
EOF

# forbidden.test resolves (for the Supervisor) to a forbidden address: the
# app must still not be able to resolve it, since it is not in its manifest.
echo '{"forbidden.test": ["127.0.0.2"], "allowed.test": ["127.0.0.1"]}' >"$WORK/hosts-override.json"
env CITADEL_HOSTILE_MARKER="$MARKER" "$BIN/citadeld" apps serve --state "$STATE" \
  --board "$ROOT/boards/simulated.json" --hosts-override "$WORK/hosts-override.json" >>"$WORK/citadeld.log" 2>&1 &
CITADELD_PID=$!
PIDS+=("$CITADELD_PID")
wait_until 20 "citadeld apps serve answers on $STATE/dev.sock" cli app list --json

# ---- the neighbour: samples/blink with a fresh component id (parallel tests
# must not share a cgroup), the hostile's LED is LED3 so they do not collide.
BLINK_CID=$(new_cid)
sed "s/\"ComponentId\": *\"[^\"]*\"/\"ComponentId\": \"$BLINK_CID\"/" "$ROOT/samples/blink/app_manifest.json" \
  >"$WORK/blink-manifest.json"
"$ROOT/scripts/pack-sample" blink "$WORK/blink" --bin-dir "$BIN" --manifest "$WORK/blink-manifest.json" \
  --key "$KEYS/publisher.key" -o "$WORK/blink.img" >/dev/null
cli app install "$WORK/blink.img" --json >/dev/null || fail "installing blink"
wait_until 20 "blink running" is_running "$BLINK_CID"
wait_until 20 "blink toggling" blink_past 1
BLINK_PID=$(app_field "$BLINK_CID" pid)
if [ -z "$BLINK_PID" ] || ! kill -0 "$BLINK_PID"; then fail "blink's pid '$BLINK_PID' is not a live host process"; fi

# ---- the hostile app --------------------------------------------------------
# install_hostile TEMPLATE CMDARGS [NAME=VALUE...]: packs, installs and starts
# an app ("Hostile $HOSTILE_NAME", default the attempt); prints its component id.
install_hostile() {
  local template=$1 cmdargs=$2 cid
  shift 2
  cid=$(new_cid)
  local sets=(--set "ATTEMPT=${HOSTILE_NAME:-$ATTEMPT}" --set "COMPONENT_ID=$cid" --set "CMDARGS=$cmdargs")
  for assignment in "$@"; do sets+=(--set "$assignment"); done
  "$ROOT/scripts/pack-sample" hostile "$WORK/img-$cid" --bin-dir "$BIN" --manifest "$template" "${sets[@]}" \
    --key "$KEYS/publisher.key" -o "$WORK/$cid.img" >/dev/null
  cli app install "$WORK/$cid.img" --json >/dev/null || fail "installing the hostile app ($template)"
  echo "$cid"
}

# Real listeners on forbidden destinations; each writes what it saw.
LISTENER_PIDS=()
# A listener the app may reach is started with LISTENER_ROLE=allowed; only
# the forbidden ones ("listener-*") must see nothing.
listen() {  # listen tcp|udp|unix-abstract ADDRESS PORT_OR_NAME
  local log="$WORK/${LISTENER_ROLE:-listener}-$1-${2//[^0-9a-z]/_}-$3.log"
  python3 - "$@" "$log" <<'EOF' &
import socket, sys, time
kind, address, port, log = sys.argv[1:5]
with open(log, "w") as out:
    if kind == "unix-abstract":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\0" + port)
        s.listen(8)
    else:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, int(port)))
        if kind == "tcp":
            s.listen(8)
    out.write("READY\n")
    out.flush()
    s.settimeout(0.5)
    deadline = time.time() + 110
    while time.time() < deadline:
        try:
            if kind == "udp":
                data, peer = s.recvfrom(65536)
                out.write("DATAGRAM %r from %r\n" % (data, peer))
            else:
                conn, peer = s.accept()
                out.write("CONNECTION from %r\n" % (peer,))
                conn.close()
            out.flush()
        except socket.timeout:
            pass
EOF
  LISTENER_PIDS+=($!)
  PIDS+=($!)
  wait_until 10 "listener $*" grep -q READY "$log"
}
listeners_saw_nothing() {
  local f
  for f in "$WORK"/listener-*.log; do
    [ -f "$f" ] || continue
    if grep -qv READY "$f"; then fail "a forbidden listener was reached: $(basename "$f"): $(grep -v READY "$f")"; fi
    pass "listener $(basename "$f" .log) saw no connection and no datagram"
  done
}

# check_verdict LINE EXPECTED...: LINE must be "DENIED ATTEMPT step=value ...";
# every EXPECTED "STEP=VALUE_REGEX" names a step that must be present with a
# value matching the regex; "*=VALUE_REGEX" must match every step's value.
check_verdict() {
  local line=$1
  shift
  python3 - "$ATTEMPT" "$line" "$@" <<'EOF' || fail "verdict of $ATTEMPT is wrong: $line"
import re, sys
attempt, line, expected = sys.argv[1], sys.argv[2], sys.argv[3:]
words = line.split(" ")
if len(words) < 3 or words[0] != "DENIED" or words[1] != attempt:
    sys.exit(f"not a DENIED line for {attempt}")
steps = {}
for word in words[2:]:
    step, _, value = word.rpartition("=")
    steps[step] = value
ok = True
for item in expected:
    step, _, pattern = item.rpartition("=")
    if step == "*":
        bad = {s: v for s, v in steps.items() if not re.fullmatch(pattern, v)}
        if bad:
            print(f"steps with a value other than {pattern}: {bad}", file=sys.stderr); ok = False
    elif step not in steps:
        print(f"step {step} missing", file=sys.stderr); ok = False
    elif not re.fullmatch(pattern, steps[step]):
        print(f"step {step}={steps[step]}, expected {pattern}", file=sys.stderr); ok = False
sys.exit(0 if ok else 1)
EOF
  pass "verdict: $line"
}

wait_verdict() {  # wait_verdict CID: prints the verdict line
  local deadline=$((SECONDS + VERDICT_TIMEOUT)) line=""
  while [ -z "$line" ] && [ $SECONDS -lt $deadline ]; do
    line=$(verdict_of "$1")
    [ -n "$line" ] || sleep 0.3
  done
  [ -n "$line" ] || fail "no verdict from $ATTEMPT within ${VERDICT_TIMEOUT}s; its log: $(app_lines "$1" | tail -n 5)"
  echo "$line"
}

expect_violation() {  # expect_violation CID: the runtime reported >= 1 violation for it
  local count
  count=$(app_field "$1" violations)
  [ "${count:-0}" -ge 1 ] || fail "no policy violation was reported for $ATTEMPT (violations=$count)"
  grep -q "app policy violation" "$WORK/citadeld.log" || fail "citadeld's log has no 'app policy violation' line"
  pass "runtime reported $count violation(s): $(cli app logs "$1" --json | json '[v["syscall"] for v in d.get("violations", [])]')"
}

port_a=$(free_port)
port_b=$(free_port)
while [ "$port_b" = "$port_a" ]; do port_b=$(free_port); done
toggles_before=$(blink_toggles)
CHECK_VIOLATION=yes  # set to "no" where the kernel stops the attempt silently

case $ATTEMPT in
  read-other-storage)
    # A victim app with data in its own storage.
    VICTIM=$(HOSTILE_NAME=victim install_hostile "$TEMPLATES/storage.json.in" '"fill-storage", "256"' QUOTA_KB=256)
    wait_verdict "$VICTIM" >/dev/null
    cli app stop "$VICTIM" --json >/dev/null
    [ -f "$STATE/apps/$VICTIM/storage.ext4" ] || fail "the victim has no storage image on the host"
    CID=$(install_hostile "$TEMPLATES/storage.json.in" \
      "\"read-other-storage\", \"$VICTIM\", \"$STATE/apps/$VICTIM/storage.ext4\", \"$STATE/apps/$VICTIM/root/app_manifest.json\"" \
      QUOTA_KB=512)
    line=$(wait_verdict "$CID")
    # The mount namespace stops it silently (no such path): errno only.
    CHECK_VIOLATION=no
    check_verdict "$line" "*=ENOENT|EACCES" "/mnt/config/../$VICTIM=ENOENT|EACCES" "/mnt/$VICTIM=ENOENT|EACCES" \
      "/var/lib/citadel/apps/$VICTIM/storage.ext4=ENOENT|EACCES" \
      "/proc/1/root/var/lib/citadel/apps/$VICTIM/storage.ext4=ENOENT|EACCES" \
      "$STATE/apps/$VICTIM/storage.ext4=ENOENT|EACCES"
    ;;
  open-unlisted-gpio | open-unlisted-i2c | open-unlisted-uart)
    sed 's/"LED1"/"LED3"/' "$TEMPLATES/peripherals.json.in" >"$WORK/peripherals.json.in"
    CID=$(install_hostile "$WORK/peripherals.json.in" "\"$ATTEMPT\"")
    line=$(wait_verdict "$CID")
    case $ATTEMPT in
      open-unlisted-gpio)
        check_verdict "$line" "GPIO_OpenAsOutput=EACCES" "GPIO_OpenAsInput=EACCES" "/dev/gpiochip0=ENOENT" \
          "/sys/class/gpio/export=ENOENT|EACCES" ;;
      open-unlisted-i2c) check_verdict "$line" "*=EACCES|ENOENT" "I2CMaster_Open=EACCES" "/dev/i2c-0=ENOENT" ;;
      open-unlisted-uart) check_verdict "$line" "*=EACCES|ENOENT" "UART_Open=EACCES" "/dev/ttyS0=ENOENT" ;;
    esac
    ;;
  connect-unlisted-ip)
    listen tcp 127.0.0.2 "$port_a"
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "tcp:127.0.0.2=EACCES"
    ;;
  connect-unlisted-host)
    listen tcp 127.0.0.2 "$port_a"
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    # Resolution fails inside the app (its /etc/hosts lists only allowed
    # names; no nameserver is reachable): nothing reaches the runtime.
    CHECK_VIOLATION=no
    check_verdict "$line" "resolve:forbidden.test=EAI_NONAME"
    ;;
  connect-udp)
    listen udp 127.0.0.2 "$port_a"
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "udp-connect:127.0.0.2=EACCES" "udp-sendto:127.0.0.2=EACCES"
    ;;
  udp-redirect)
    listen udp 127.0.0.2 "$port_a"
    LISTENER_ROLE=allowed listen udp 127.0.0.1 "$port_b"
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_b\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "sendto-redirect:127.0.0.2=EACCES" "sendmsg-redirect:127.0.0.2=EACCES" \
      "sendmmsg-redirect:127.0.0.2=EACCES" "unix-sendto-with-address=EACCES"
    wait_until 10 "the app's send() on its allowed UDP socket" app_has_line "$CID" '^ALLOWED-SEND '
    app_has_line "$CID" -x 'ALLOWED-SEND ok' || fail "send() on the allowed UDP socket failed: $(app_lines "$CID" | grep '^ALLOWED-SEND')"
    wait_until 10 "the allowed datagram at 127.0.0.1:$port_b" grep -q "DATAGRAM b'allowed'" "$WORK/allowed-udp-127_0_0_1-$port_b.log"
    pass "send() on the connected UDP socket still reaches the allowed address"
    ;;
  connect-ipv6)
    listen tcp ::1 "$port_a"
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "tcp:[::1]=EACCES"
    ;;
  raw-socket)
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "AF_INET/SOCK_RAW=EACCES" "AF_INET6/SOCK_RAW=EACCES" \
      "AF_PACKET/SOCK_RAW=EACCES" "AF_PACKET/SOCK_DGRAM=EACCES"
    ;;
  own-resolver)
    listen udp 127.0.0.2 53
    listen tcp 127.0.0.2 53
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "dns-sendto:127.0.0.2:53=EACCES" "dns-connect:127.0.0.2:53=EACCES"
    ;;
  listen-unlisted-port)
    CID=$(install_hostile "$TEMPLATES/network.json.in" "\"$ATTEMPT\", \"$port_a\"" "ALLOWED_TCP_PORT=$port_b")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EACCES" "tcp-bind=EACCES" "udp-bind=EACCES"
    ;;
  ptrace)
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"ptrace\", \"$BLINK_PID\"")
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EPERM" "attach:argv-pid=EPERM" "attach:pid1=EPERM" "attach:own-child=EPERM" \
      "process_vm_readv:own-child=EPERM"
    ;;
  kill-other)
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"kill-other\", \"$BLINK_PID\"")
    line=$(wait_verdict "$CID")
    # kill() is allowed by seccomp: the pid namespace makes other processes
    # invisible (ESRCH), so the kernel stops it silently.
    CHECK_VIOLATION=no
    check_verdict "$line" "*=ESRCH" "kill:argv-pid=ESRCH" "kill:-1=ESRCH"
    ;;
  mount)
    CID=$(install_hostile "$TEMPLATES/none.json.in" '"mount"')
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EPERM" "mount-tmpfs:/tmp=EPERM" "bind:/->/tmp=EPERM" "umount:/app=EPERM"
    ;;
  unshare)
    CID=$(install_hostile "$TEMPLATES/none.json.in" '"unshare"')
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EPERM" "CLONE_NEWUSER=EPERM" "CLONE_NEWNS=EPERM" "CLONE_NEWNET=EPERM"
    ;;
  setuid)
    CID=$(install_hostile "$TEMPLATES/none.json.in" '"setuid"')
    line=$(wait_verdict "$CID")
    check_verdict "$line" "*=EPERM" "setuid(0)=EPERM" "setgid(0)=EPERM" "setresuid(0)=EPERM" "setgroups=EPERM"
    ;;
  write-image)
    CID=$(install_hostile "$TEMPLATES/none.json.in" '"write-image"')
    line=$(wait_verdict "$CID")
    # A read-only bind mount: the kernel answers EROFS, nothing to report.
    CHECK_VIOLATION=no
    check_verdict "$line" "*=EROFS|EACCES" "/app/bin/hostile=EROFS|EACCES" "/app/x=EROFS|EACCES" \
      "unlink-manifest=EROFS|EACCES" "chmod=EROFS|EACCES"
    cmp -s "$BIN/hostile" "$STATE/apps/$CID/root/bin/hostile" || fail "the installed image's program changed"
    ;;
  exec-written)
    CID=$(install_hostile "$TEMPLATES/storage.json.in" '"exec-written"' QUOTA_KB=4096)
    line=$(wait_verdict "$CID")
    # The copies may be written; running them is what must fail.
    check_verdict "$line" "execve:/tmp=EACCES" "ld.so:/tmp=loader-could-not-map" \
      "execve:/mnt/config=EACCES" "ld.so:/mnt/config=loader-could-not-map" "memfd_create=EPERM|EACCES"
    grep -q '^copy:' <<<"${line// /$'\n'}" && fail "copying into a writable directory failed: $line"
    ;;
  wx-memory)
    CID=$(install_hostile "$TEMPLATES/none.json.in" '"wx-memory"')
    line=$(wait_verdict "$CID")
    check_verdict "$line" "mmap-rwx=EACCES" "mprotect-rw-to-rwx=EACCES" "pkey_mprotect-rwx=EACCES" \
      "memfd_create=EPERM|EACCES"
    ;;
  fork-bomb)
    CID=$(install_hostile "$TEMPLATES/limits.json.in" '"fork-bomb", "4096"' MEMORY_MB=16 MAX_PROCESSES=8)
    # The runtime's view: the app's pids cgroup counts refused forks.
    events=""
    deadline=$((SECONDS + VERDICT_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
      # The device's group tree: citadel-<first 16 hex digits of its id>.
      tree="citadel-$("$BIN/citadeld" id --state "$STATE" | cut -c1-16)"
      for f in /sys/fs/cgroup/pids/"$tree"/"$CID"/pids.events /sys/fs/cgroup/"$tree"/"$CID"/pids.events \
        /sys/fs/cgroup/unified/"$tree"/"$CID"/pids.events; do
        if [ -f "$f" ]; then
          n=$(sed -n 's/^max \([0-9]*\)$/\1/p' "$f" 2>/dev/null || true)
          [ -n "$n" ] && [ "$n" -gt "${events:-0}" ] && events=$n
        fi
      done
      has_verdict "$CID" && break
      sleep 0.2
    done
    app_has_line "$CID" -x "ATTEMPT fork-bomb" || fail "fork-bomb did not print its ATTEMPT line"
    line=$(wait_verdict "$CID")
    CHECK_VIOLATION=no  # the pids controller refuses forks with EAGAIN: a limit, not a policy violation
    check_verdict "$line" "fork=EAGAIN\(after-[1-7]-processes\)"
    [ "${events:-0}" -ge 1 ] || fail "the app's pids cgroup never recorded hitting pids.max"
    pass "the pids cgroup refused $events fork(s)"
    ;;
  memory-bomb)
    CID=$(install_hostile "$TEMPLATES/limits.json.in" '"memory-bomb", "16"' MEMORY_MB=16 MAX_PROCESSES=8)
    oom_seen() { app_field "$CID" last_exit | grep -q "out of memory"; }
    wait_until "$VERDICT_TIMEOUT" "the memory bomb's OOM kill in last_exit" oom_seen
    app_has_line "$CID" -x "ATTEMPT memory-bomb" || fail "memory-bomb did not print its ATTEMPT line"
    line=$(verdict_of "$CID")
    [ -z "$line" ] || fail "memory-bomb was not killed by the OOM killer: $line"
    line="(killed) last_exit: $(app_field "$CID" last_exit)"
    pass "$line"
    CHECK_VIOLATION=no  # a resource limit, not a policy violation
    ;;
  fill-storage)
    CID=$(install_hostile "$TEMPLATES/storage.json.in" '"fill-storage", "1024"' QUOTA_KB=1024)
    line=$(wait_verdict "$CID")
    CHECK_VIOLATION=no  # the ext4 image is full: ENOSPC from the file system
    check_verdict "$line" "write=ENOSPC\(after-[0-9]+KiB-quota-1024KiB\)" "read-back=ok"
    ;;
  read-device-key)
    keys=()
    for f in "$STATE"/rot/*; do keys+=("\"$f\""); done
    [ ${#keys[@]} -ge 1 ] || fail "no RoT files under $STATE/rot to aim at"
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"read-device-key\", $(IFS=,; echo "${keys[*]}")")
    line=$(wait_verdict "$CID")
    expected=()
    for f in "$STATE"/rot/*; do expected+=("$f=ENOENT"); done
    check_verdict "$line" "*=ENOENT|EACCES" "DeviceAuth_SignDigest=EACCES" "/var/lib/citadel/rot/tls.key=ENOENT" \
      "/proc/1/root/var/lib/citadel/rot/tls.key=ENOENT|EACCES" "/dev/tpm0=ENOENT" "${expected[@]}"
    ;;
  read-other-cert)
    # Files that exist on the host: the device's RoT public material and
    # another app's image; ENOENT proves they are outside the app's world.
    targets=("$KEYS/publisher.pem" "$STATE/apps/$BLINK_CID/root/app_manifest.json")
    for f in "$STATE"/rot/*.pem "$STATE"/certs/*.pem; do [ -f "$f" ] && targets+=("$f"); done
    args=""
    for f in "${targets[@]}"; do args+=", \"$f\""; done
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"read-other-cert\"$args")
    line=$(wait_verdict "$CID")
    expected=()
    for f in "${targets[@]}"; do expected+=("$f=ENOENT"); done
    check_verdict "$line" "*=ENOENT|EACCES" "DeviceAuth_GetCertificateChainPem=EACCES" "${expected[@]}"
    ;;
  read-proc1-environ)
    grep -q "$MARKER" "/proc/$CITADELD_PID/environ" || fail "the marker is not in citadeld's environment"
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"read-proc1-environ\", \"$MARKER\", \"$CITADELD_PID\", \"$BLINK_PID\"")
    line=$(wait_verdict "$CID")
    # Another pid namespace: host pids do not exist there (ENOENT), silently.
    CHECK_VIOLATION=no
    check_verdict "$line" "/proc/1/environ=marker-absent" "/proc/*/environ=[0-9]+-others-no-marker" \
      "/proc/$CITADELD_PID/environ=ENOENT|marker-absent" "/proc/$BLINK_PID/environ=ENOENT|marker-absent"
    ;;
  unix-socket)
    name="citadel-hostile-$$-$RANDOM"
    listen unix-abstract - "$name"
    CID=$(install_hostile "$TEMPLATES/none.json.in" "\"unix-socket\", \"$STATE/dev.sock\", \"$name\"")
    line=$(wait_verdict "$CID")
    # dev.sock is not in the app's mount namespace and the abstract name is
    # in another network namespace: the kernel stops both silently.
    CHECK_VIOLATION=no
    check_verdict "$line" "path=ENOENT" "abstract=ECONNREFUSED|EPERM"
    ;;
  *)
    fail "unknown attempt $ATTEMPT (see tests/e2e/hostile/README.md)"
    ;;
esac

# ---- what must hold after every attempt ------------------------------------
[ "$CHECK_VIOLATION" = yes ] && expect_violation "$CID"
app_has_line "$CID" '^ESCAPED ' && fail "$ATTEMPT escaped: $(app_lines "$CID" | grep '^ESCAPED ' | head -n 1)"
listeners_saw_nothing

kill -0 "$CITADELD_PID" 2>/dev/null || fail "citadeld died"
cli app list --json >/dev/null || fail "citadeld no longer answers app list"
wait_until 15 "blink still toggling after $ATTEMPT (it was at ${toggles_before})" blink_past "$((toggles_before + 2))"
[ "$(app_field "$BLINK_CID" state)" = running ] || fail "blink is not running after $ATTEMPT"
[ "$(app_field "$BLINK_CID" pid)" = "$BLINK_PID" ] || fail "blink was restarted (pid $BLINK_PID -> $(app_field "$BLINK_CID" pid))"
kill -0 "$BLINK_PID" || fail "blink's process $BLINK_PID is gone"
pass "blink kept running (pid $BLINK_PID, toggles ${toggles_before} -> $(blink_toggles))"

# No RoT private key material in any log.
cli app stop "$CID" --json >/dev/null 2>&1 || true
for f in "$STATE"/rot/*; do
  grep -q "PRIVATE KEY" "$f" 2>/dev/null || continue
  while read -r body; do
    [ ${#body} -ge 16 ] || continue
    grep -qF -- "$body" "$WORK/citadeld.log" && fail "RoT key text from $f is in citadeld's log"
    { app_has_line "$CID" -F -- "$body" || app_has_line "$BLINK_CID" -F -- "$body"; } && fail "RoT key text from $f is in an app log"
  done < <(grep -v -- '-----' "$f")
  grep -q "PRIVATE KEY" "$WORK/citadeld.log" && fail "citadeld's log holds a PEM private key"
done
pass "no RoT key text in citadeld's or the apps' logs"
echo "RESULT $ATTEMPT: $line"
