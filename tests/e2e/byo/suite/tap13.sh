#!/bin/sh
# A developer's script printing the kselftest harness's TAP 13 (for tests/e2e/byo-test.test.ts):
# one case passes when the device's config space is readable, one skips with its reason.
echo "TAP version 13"
echo "1..2"
if [ -r "/sys/bus/pci/devices/$EDU_PLUS_BDF/config" ]; then
	echo "ok 1 config_readable"
else
	echo "not ok 1 config_readable # no config file for '$EDU_PLUS_BDF'"
fi
echo "ok 2 needs_two_devices # SKIP one device per VM"
exit 0
