#!/usr/bin/env bash
# Acceptance 5: kill the server (SIGKILL) and restart it while devices run:
# the devices recover on their own and no state is lost.
source "$(dirname "$0")/lib.sh"

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 1
setup_tenant Acme
for n in 1 2; do provision_device $n; start_device $n --unclaimed-retry 1s --check-in-interval 1s --max-backoff 2s; done
for n in 1 2; do wait_until 30 "device $n seen" claim $n; done
for n in 1 2; do wait_until 60 "device $n attested" is_attested $n; done
serial_before=$(device_field 1 certificate_serial)

{ kill -9 "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null || true
# While the service is down the devices back off; they must keep running.
sleep 3
for n in 1 2; do
  pid_var="DEVICE_PID_$n"
  kill -0 "${!pid_var}" || fail "device $n exited while the service was down"
done
checkins_down=$(device_field 1 check_ins)

start_server --unclaimed-retry 1 --check-in-interval 1
checked_in_again() { [ "$(device_field 1 check_ins)" -gt "$checkins_down" ] && is_attested 1; }
wait_until 30 "device 1 checks in after the restart" checked_in_again
for n in 2; do
  wait_until 30 "device $n attested after restart" is_attested $n
done
pass "devices recovered on their own after the restart"

shown=$("$BIN/citadel" device show "$(device_id 1)" --json)
[ "$(json 'd["tenant_id"]' <<<"$shown")" = "$TENANT_ID" ] || fail "device 1 lost its tenant after the restart"
[ "$(json 'd["certificate_serial"]' <<<"$shown")" = "$(device_field 1 certificate_serial)" ] || fail "service and device disagree on the certificate"
[ "$(device_field 1 certificate_serial)" = "$serial_before" ] || echo "note: device 1 re-attested after the restart"
"$BIN/citadel" device list --json | json 'len(d["devices"])' | grep -qx 2 || fail "device list lost devices"
pass "no state lost: tenant, claims and certificates survive"
echo "1 passed, 0 failed"
