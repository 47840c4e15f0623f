#!/usr/bin/env bash
# The CLI against a real service: every command with --json, tables for
# people, exit codes and hints on errors, and device-side refusals seen
# through the real citadeld.
source "$(dirname "$0")/lib.sh"

make_manufacturer
start_server --unclaimed-retry 1 --check-in-interval 5
setup_tenant Acme

# Human output is a table with a header row.
"$BIN/citadel" product list | head -1 | grep -q "NAME" || fail "product list has no table header"
"$BIN/citadel" device-group list | grep -q "Field Test" || fail "device-group list misses default groups"
"$BIN/citadel" tenant show --json | json 'd["id"]' | grep -qx "$TENANT_ID" || fail "tenant show --json"

# A genuine device attests unclaimed, then is claimed once.
provision_device 1
"$BIN/citadeld" run --state "$(device_dir 1)" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --once >"$WORK/once-unclaimed.log" 2>&1 || true
[ "$(device_state 1)" = unclaimed ] || fail "an unclaimed device should end in state 'unclaimed', not $(device_state 1)"
[ ! -f "$(device_dir 1)/certs/device.pem" ] || fail "an unclaimed device must not hold a certificate"
claim 1 || fail "claim failed"
set +e
"$BIN/citadel" device claim "$(device_id 1)" >/dev/null 2>"$WORK/claim-again.err"; code=$?
set -e
[ $code -eq 5 ] || fail "claiming twice should exit 5 (conflict), got $code"
grep -qi "already claimed" "$WORK/claim-again.err" || fail "claiming twice should say it is already claimed"
"$BIN/citadeld" run --state "$(device_dir 1)" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --os-version 1.0.0 --once >"$WORK/once-claimed.log" 2>&1 || fail "a claimed device should attest with --once"
[ -f "$(device_dir 1)/certs/device.pem" ] || fail "the claimed device holds no certificate"
pass "claim flow: unclaimed -> claimed -> certificate"

# Another tenant cannot claim it.
"$BIN/citadel" login --server "$SERVER_URL" --token "$(cat "$SERVER_DATA/operator-token")" --ca "$SERVER_DATA/service-ca.pem" --json >/dev/null
other=$("$BIN/citadel" tenant create Other --json)
OTHER_TOKEN=$(json 'd["admin_token"]["token"]' <<<"$other")
set +e
CITADEL_TOKEN="$OTHER_TOKEN" "$BIN/citadel" device claim "$(device_id 1)" 2>"$WORK/steal.err"; code=$?
set -e
[ $code -eq 5 ] || fail "claiming another tenant's device should exit 5, got $code"
grep -qi "another tenant" "$WORK/steal.err" || fail "the message should say another tenant holds the device"
CITADEL_TOKEN="$OTHER_TOKEN" "$BIN/citadel" device list --json | json 'len(d["devices"])' | grep -qx 0 \
  || fail "tenant Other must not see Acme's devices"
pass "a device claimed by one tenant cannot be claimed or seen by another"
"$BIN/citadel" login --server "$SERVER_URL" --token "$ADMIN_TOKEN" --ca "$SERVER_DATA/service-ca.pem" --json >/dev/null

# A device with no manufacturer chain is refused and says why.
"$BIN/citadeld" provision --state "$(device_dir 2)" --no-manufacturer >/dev/null
set +e
"$BIN/citadeld" run --state "$(device_dir 2)" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --once >"$WORK/once-fake.log" 2>&1; code=$?
set -e
[ $code -ne 0 ] || fail "a device without a manufacturer chain must not succeed"
[ "$(device_field 2 last_problem_type)" = "urn:citadel:problem:not-genuine" ] || fail "expected not-genuine, got $(device_field 2 last_problem_type)"
pass "a device without a manufacturer chain is refused as not genuine"

# Revoking the OS version refuses the next attestation and names it.
"$BIN/citadel" policy revoke-os-version 1.0.0 --json >/dev/null
# (--once always attests, even while the stored certificate is still valid.)
set +e
"$BIN/citadeld" run --state "$(device_dir 1)" --server "$SERVER_URL" --server-ca "$SERVER_DATA/service-ca.pem" \
  --os-version 1.0.0 --once >"$WORK/once-revoked.log" 2>&1; code=$?
set -e
[ $code -ne 0 ] || fail "a revoked OS version must not attest"
[ "$(device_field 1 last_problem_type)" = "urn:citadel:problem:policy-violation" ] || fail "expected policy-violation"
"$BIN/citadel" device show "$(device_id 1)" --json | json 'd["last_verdict"]' | grep -qx policy-violation \
  || fail "the service should record the policy-violation verdict"
"$BIN/citadel" policy list | grep -q "1.0.0" || fail "policy list should show the revoked version"
pass "revoked OS version refused; verdict recorded"

# Errors: exit codes and hints.
set +e
CITADEL_TOKEN=cit_bogus "$BIN/citadel" device list 2>"$WORK/bad-token.err"; code=$?
set -e
[ $code -eq 3 ] || fail "a bad token should exit 3, got $code"
grep -q "citadel login" "$WORK/bad-token.err" || fail "a bad token should hint at citadel login"
set +e
"$BIN/citadel" device show 0000000000000000000000000000000000000000000000000000000000000000 2>/dev/null; code=$?
set -e
[ $code -eq 4 ] || fail "an unknown device should exit 4, got $code"
set +e
CITADEL_SERVER="https://127.0.0.1:$(free_port)" "$BIN/citadel" device list 2>"$WORK/down.err"; code=$?
set -e
[ $code -eq 6 ] || fail "an unreachable server should exit 6, got $code"
"$BIN/citadel" audit list --json | json 'len(d["events"])' | grep -qv '^0$' || fail "audit log is empty"
pass "exit codes and hints"
echo "1 passed, 0 failed"
