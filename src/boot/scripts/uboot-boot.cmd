# Citadel A/B slot selection for U-Boot (hush), with RAUC's variables.
#
# This is citadel::boot::DecideBoot (src/boot/boot_decision.hpp) for the
# bootloader; the two change together. See README.md beside this file for
# the whole contract, and build the script image with
#   mkimage -A arm64 -T script -C none -d uboot-boot.cmd boot.scr
#
#   BOOT_ORDER    slots in the order they are tried ("A B"; Citadel writes
#                 the primary last during a trial: "B A")
#   BOOT_A_LEFT   tries left for A (one digit: setexpr computes in hex)
#   BOOT_B_LEFT   tries left for B
#
# Board-specific, set in the default environment:
#   citadel_root_A, citadel_root_B  the root= of each slot (/dev/mmcblk0p2)
#   citadel_load_A, citadel_load_B  commands loading the slot's kernel and
#                                   device tree
#   citadel_boot                    the command starting it, for example
#                                   "booti ${kernel_addr_r} - ${fdt_addr_r}"
# The environment must be redundant (two copies) so that saveenv and
# fw_setenv survive a power cut.

# The defaults of RAUC's script, so an empty environment boots A.
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

# The first slot in the order with a try left is booted, and the try is
# spent before its kernel starts: a boot that never reaches a healthy
# runtime (which re-arms the counter through Commit) has used it.
setenv citadel_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test -n "${citadel_slot}"; then
    # chosen already; the rest of the order is not tried
  elif test "x${BOOT_SLOT}" = "xA"; then
    if test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv citadel_slot A
    fi
  elif test "x${BOOT_SLOT}" = "xB"; then
    if test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv citadel_slot B
    fi
  fi
done

# No try left anywhere: re-arm every counter and start over, as RAUC's
# script does, so the device never stops in a state that boots nothing.
if test -z "${citadel_slot}"; then
  echo "Citadel: no slot has a try left; re-arming every slot"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  saveenv
  reset
fi

echo "Citadel: booting slot ${citadel_slot} (tries left A=${BOOT_A_LEFT} B=${BOOT_B_LEFT})"
saveenv
if test "${citadel_slot}" = "A"; then
  setenv bootargs "${bootargs} root=${citadel_root_A} rauc.slot=A"
  run citadel_load_A
else
  setenv bootargs "${bootargs} root=${citadel_root_B} rauc.slot=B"
  run citadel_load_B
fi
run citadel_boot

# Only reached when the kernel did not start. The try is spent, so the
# next attempt moves on through the order.
echo "Citadel: slot ${citadel_slot} did not start"
reset
