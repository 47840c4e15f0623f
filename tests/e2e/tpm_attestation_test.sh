#!/usr/bin/env bash
# Issue 6 end to end: devices whose root of trust is a TPM 2.0 (swtpm, made
# the way a vendor makes one), the real service and a real Mosquitto broker.
# Two TPMs certified by one vendor CA; the service trusts that CA. Each
# device's identity is its TPM's attestation key; the service activates the
# AK against the EK before it trusts a quote. A claimed TPM device gets a
# 24-hour certificate for its TPM TLS key (no key file anywhere), checks in
# over mutual TLS, and the signed thermostat publishes readings to a broker
# that trusts only the tenant CA, signing its TLS handshakes through
# applibs -> citadeld -> the TPM. Finally a runtime that differs by one
# byte, after the tenant accepted only the genuine runtime digest, is
# refused at its next attestation, naming the runtime measurement.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# readpublic TPM HANDLE OUT: the public key of a persistent TPM object as
# PEM, read with tpm2-tools (not citadeld). Only while no citadeld holds
# the TPM's connection.
readpublic() {
  tpm2_readpublic -T "$(tpm_tcti "$1")" -c "$2" -f pem -o "$3" >/dev/null 2>&1 \
    || fail "tpm2_readpublic $2 on TPM $1 failed"
}
spki_sha256() { openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  fail "process $1 did not stop within 10 s"
}
has_state() { [ -f "$(device_dir "$1")/status.json" ] && [ "$(device_state "$1")" = "$2" ]; }
refused_for_policy() {
  has_state "$1" refused && [ "$(device_field "$1" last_problem_type)" = urn:citadel:problem:policy-violation ]
}
runtime_starts_exceed() { [ "$(grep -c "device runtime starting" "$WORK/device-$1.log")" -gt "$2" ]; }
attested_with_new_certificate() { is_attested "$1" && [ "$(device_field "$1" certificate_serial)" != "$2" ]; }
checked_in() { [ -f "$(device_dir "$1")/status.json" ] && [ "$(device_field "$1" check_ins)" -ge 1 ]; }

# 1. Two TPMs from one vendor; the service trusts the vendor's root.
make_manufacturer  # software manufacturer: only for the subscriber's device (below)
make_tpm 1
make_tpm 2
if [ ! -f "$TPM_VENDOR_CA/swtpm-localca-rootca-cert.pem" ] || [ ! -f "$TPM_VENDOR_CA/issuercert.pem" ]; then
  fail "the TPM vendor CA was not created"
fi
start_server --unclaimed-retry 1 --check-in-interval 1 \
  --trust-tpm-manufacturer-ca "$TPM_VENDOR_CA/swtpm-localca-rootca-cert.pem"
setup_tenant "Thermo Maker"
pass "two TPMs manufactured by one vendor CA; the service trusts the vendor root"

# 2. Provisioning: the device id is SHA-256 of the AK's SPKI, as the TPM
# itself reports the AK (0x81000002).
ID1=$(provision_tpm_device 1) || fail "citadeld provision --rot tpm2 (TPM 1) failed: $(cat "$WORK/provision-1.log")"
ID2=$(provision_tpm_device 2) || fail "citadeld provision --rot tpm2 (TPM 2) failed: $(cat "$WORK/provision-2.log")"
[[ "$ID1" =~ ^[0-9a-f]{64}$ ]] || fail "provision printed '$ID1', not a device id"
[ "$ID1" != "$ID2" ] || fail "two TPMs gave the same device id"
[ "$(tpm_device_id 1)" = "$ID1" ] || fail "citadeld id --rot tpm2 does not print the provisioned id"
[ "$(tpm_device_id 2)" = "$ID2" ] || fail "citadeld id --rot tpm2 (TPM 2) does not print the provisioned id"
readpublic 1 0x81000002 "$WORK/ak1.pem"
[ "$(spki_sha256 "$WORK/ak1.pem")" = "$ID1" ] || fail "device id $ID1 is not SHA-256 of the TPM's AK SPKI"
readpublic 1 0x81000003 "$WORK/tls1.pem"
pass "provisioned: device id = SHA-256(AK SPKI) = citadeld id ($ID1)"

# 3. Activated, unclaimed, claimed, attested, certified, checking in.
start_tpm_device 1 --unclaimed-retry 1s --check-in-interval 1s --board "$ROOT/boards/simulated.json"
wait_until 30 "device 1 unclaimed" has_state 1 unclaimed
grep -q "TPM attestation key activated.*$ID1" "$WORK/server.log" \
  || fail "the service log shows no activation of $ID1"
grep -q "TPM attestation key activated with the service" "$WORK/device-1.log" \
  || fail "device 1 did not log its activation"
pass "device 1's AK activated against its EK (credential activation) and seen unclaimed"
"$BIN/citadel" device claim "$ID1" --device-group "$GROUP_ID" --json >/dev/null
wait_until 60 "device 1 attested" is_attested 1
wait_until 30 "device 1 checked in over mutual TLS" checked_in 1
[ "$("$BIN/citadel" device show "$ID1" --json | json 'd["rot"]')" = tpm2 ] || fail "the service does not list device 1 as tpm2"
cert="$(device_dir 1)/certs/device.pem"
openssl x509 -in "$cert" -pubkey -noout >"$WORK/cert1-pub.pem"
[ "$(spki_sha256 "$WORK/cert1-pub.pem")" = "$(spki_sha256 "$WORK/tls1.pem")" ] \
  || fail "the device certificate's key is not the TPM TLS key (0x81000003)"
python3 - "$cert" <<'EOF' || fail "the device certificate is not valid for 24 hours"
import subprocess, sys
from datetime import datetime
out = subprocess.run(["openssl", "x509", "-in", sys.argv[1], "-noout", "-startdate", "-enddate"],
                     check=True, capture_output=True, text=True).stdout
d = dict(line.split("=", 1) for line in out.splitlines())
parse = lambda s: datetime.strptime(s.strip(), "%b %d %H:%M:%S %Y %Z")
hours = (parse(d["notAfter"]) - parse(d["notBefore"])).total_seconds() / 3600
assert 23.5 <= hours <= 24.5, hours
EOF
keys=$(find "$(device_dir 1)" -name '*.key' -print)
[ -z "$keys" ] || fail "key files in a TPM device's state: $keys"
if grep -rlq "PRIVATE KEY" "$(device_dir 1)"; then fail "a private key in a TPM device's state dir"; fi
pass "device 1 attested: 24-hour certificate for the TPM TLS key, no key file in its state, $(device_field 1 check_ins) mTLS check-in(s)"

# The second TPM: its own identity, its own activation.
start_tpm_device 2 --unclaimed-retry 1s --check-in-interval 1s
wait_until 30 "device 2 unclaimed" has_state 2 unclaimed
"$BIN/citadel" device claim "$ID2" --device-group "$GROUP_ID" --json >/dev/null
wait_until 60 "device 2 attested" is_attested 2
grep -q "TPM attestation key activated.*$ID2" "$WORK/server.log" || fail "the service log shows no activation of $ID2"
pass "device 2 (TPM 2) activated and attested on its own"

# The subscriber's identity: a certificate from the tenant CA with a key
# file, i.e. a software-RoT device of the same tenant (device 3).
provision_device 3 2>>"$WORK/provision-3.log"
start_device 3 --unclaimed-retry 1s --check-in-interval 1s
wait_until 30 "device 3 unclaimed" has_state 3 unclaimed
claim 3
wait_until 60 "device 3 attested" is_attested 3

# 4. The thermostat on device 1: MQTT over TLS with the TPM-held key.
"$BIN/citadel" publisher-key create --out "$WORK/keys" >/dev/null
"$BIN/citadel" publisher-key register "$WORK/keys/publisher.pem" --name release --json >/dev/null
wait_until 30 "device 1 learnt the publisher key at check-in" \
  grep -q "BEGIN PUBLIC KEY" "$(device_dir 1)/trust/publisher-keys.json"
start_broker
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/broker-ca.pem" \
  --cert "$(device_dir 3)/certs/device.pem" --key "$(device_dir 3)/rot/tls.key" -i subscriber \
  -t "devices/+/temperature" -C 3 -W 60 >"$WORK/readings.txt" 2>"$WORK/sub.log" &
SUB_PID=$!
PIDS+=("$SUB_PID")
wait_until 10 "the subscriber connected" grep -q "New client connected.*subscriber" "$WORK/mosquitto.log"
install_thermostat 1
wait "$SUB_PID" || fail "no 3 readings arrived at the broker within 60 s (thermostat log: $(
  "$BIN/citadel" device app logs Thermostat --device "$(device_dir 1)" -n 20 2>&1))"
python3 - "$WORK/readings.txt" "$ID1" <<'EOF' || fail "readings are not the TPM device's: $(cat "$WORK/readings.txt")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 3, lines
for line in lines:
    r = json.loads(line)
    assert abs(r["celsius"] - 21.5) < 0.01, r   # the simulated TMP102's default
    assert r["device"] == sys.argv[2], r        # the device certificate's CN
EOF
grep -q "New client connected.*u'$ID1'\|New client connected.*$ID1" "$WORK/mosquitto.log" \
  || fail "the broker did not see device 1's certificate as the client identity"
pass "3 readings arrived at Mosquitto over TLS, authenticated by the TPM device's certificate"
"$BIN/citadel" device app remove Thermostat --device "$(device_dir 1)" --json >/dev/null

# 5. A runtime one byte off is refused at its next attestation.
GENUINE=$(sha256sum "$BIN/citadeld" | cut -d' ' -f1)
"$BIN/citadel" policy accept-runtime-digest "$GENUINE" --json >/dev/null
# Control: the genuine runtime still passes under that policy (device 2,
# made to re-attest by revoking its certificate).
serial2=$(device_field 2 certificate_serial)
"$BIN/citadel" device revoke-certificate "$ID2" --json >/dev/null
wait_until 60 "device 2 re-attested under the runtime allow-list" attested_with_new_certificate 2 "$serial2"
pass "with only the genuine runtime digest accepted, the genuine runtime re-attests"

stop_pid "$DEVICE_PID_1"
starts=$(grep -c "device runtime starting" "$WORK/device-1.log")
reboot_tpm 1
mkdir -p "$WORK/changed"
cp "$BIN/citadeld" "$WORK/changed/citadeld"
printf '\n' >>"$WORK/changed/citadeld"
chmod 0755 "$WORK/changed/citadeld"
CHANGED=$(sha256sum "$WORK/changed/citadeld" | cut -d' ' -f1)
[ "$CHANGED" != "$GENUINE" ] || fail "test bug: the changed runtime has the genuine digest"
"$WORK/changed/citadeld" run --rot tpm2 --tcti "$(tpm_tcti 1)" --state "$(device_dir 1)" --server "$SERVER_URL" \
  --server-ca "$SERVER_DATA/service-ca.pem" --os-version 1.0.0 --unclaimed-retry 1s --check-in-interval 1s \
  >>"$WORK/device-1.log" 2>&1 &
PIDS+=($!)
# It restarts on its stored certificate; the next attestation is forced by
# revoking that certificate (otherwise it comes at renewal).
wait_until 30 "the changed runtime started" runtime_starts_exceed 1 "$starts"
"$BIN/citadel" device revoke-certificate "$ID1" --json >/dev/null
wait_until 60 "device 1 refused for policy" refused_for_policy 1
last_error=$(device_field 1 last_error)
grep -q "measurement runtime: digest $CHANGED is not an accepted runtime digest" <<<"$last_error" \
  || fail "device 1's status does not name the runtime measurement: $last_error"
[ "$(device_field 1 last_problem_type)" = "urn:citadel:problem:policy-violation" ] \
  || fail "problem type is $(device_field 1 last_problem_type), not policy-violation"
[ "$("$BIN/citadel" device show "$ID1" --json | json 'd["last_verdict"]')" = policy-violation ] \
  || fail "the service's last verdict for device 1 is not policy-violation"
"$BIN/citadel" audit list --json >"$WORK/audit.json"
grep -q "measurement runtime: digest $CHANGED" "$WORK/audit.json" \
  || fail "the tenant audit log does not name the runtime measurement"
pass "a runtime one byte off is refused: \"measurement runtime: digest ${CHANGED:0:12}... is not an accepted runtime digest\""
echo "1 passed, 0 failed"
