#!/usr/bin/env bash
# A running device renews its certificate by itself at about 2/3 of the
# certificate's lifetime, through a fresh attestation. The service here
# issues 60-second certificates (valid from 60 s before issuance for clock
# skew), so renewal falls about 20 s after issuance.
source "$(dirname "$0")/lib.sh"

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 5 --device-certificate-lifetime 60
setup_tenant Acme
provision_device 1
start_device 1 --unclaimed-retry 1s --check-in-interval 5s
wait_until 30 "device seen" claim 1
wait_until 30 "device attested" is_attested 1
first_serial=$(device_field 1 certificate_serial)
first_issued=$SECONDS

renewed() { [ "$(device_field 1 certificate_serial)" != "$first_serial" ] && is_attested 1; }
wait_until 60 "the device renews its certificate" renewed
elapsed=$((SECONDS - first_issued))
[ $elapsed -ge 8 ] || fail "renewed after ${elapsed}s: too early for 2/3 of a 120 s validity window"
[ "$(device_field 1 attestations)" -ge 2 ] || fail "renewal should be a fresh attestation"
openssl verify -CAfile <("$BIN/citadel" ca-certificate download) -purpose sslclient \
  "$(device_dir 1)/certs/device.pem" | grep -q ': OK$' || fail "the renewed certificate does not verify"
pass "renewed after ${elapsed}s with a new certificate that verifies"

# Between renewals the device is idle: no busy polling (under 2% of a core).
pid=$DEVICE_PID_1
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
sleep 5
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
ticks=$((t1 - t0))
[ $ticks -le 10 ] || fail "citadeld used $ticks clock ticks in 5 s while idle"
pass "idle device used $ticks clock ticks in 5 s"
echo "1 passed, 0 failed"
