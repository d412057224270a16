#!/bin/sh
# Measures the client's flash and RAM on a Cortex-M4 and on the host, and
# FAILS (exit 1) when flash (.text + .data) or the client struct passes its
# budget. Run from firmware-clients/c (make size does).
# Prints one "SIZE ..." and one "CONTEXT ..." line per build for scripts.
set -eu
ARM_CC=${ARM_CC:-arm-none-eabi-gcc}
HOST_CC=${HOST_CC:-gcc}
BUILD=${BUILD:-build}
FLASH_BUDGET=${FLASH_BUDGET:-2048}
FLASH_BUDGET_V5=${FLASH_BUDGET_V5:-2304}
CONTEXT_BUDGET=${CONTEXT_BUDGET:-64}
ARM_FLAGS="-std=c99 -mcpu=cortex-m4 -mthumb -Os -DNDEBUG -ffunction-sections -fdata-sections -Iinclude"
out=$BUILD/size
mkdir -p "$out"

# A size probe: an object whose only symbol is sizeof(eb_client) bytes long,
# so nm reports the struct size as the target compiler lays it out.
printf '#include "edgebus_mqtt.h"\neb_client eb_size_probe;\n' > "$out/probe.c"

fail=0
report() { # name cc flags size-tool nm-tool budget
  name=$1 cc=$2 flags=$3 sizetool=$4 nmtool=$5 budget=$6
  $cc $flags -c src/edgebus_mqtt.c -o "$out/$name.o"
  $cc $flags -fno-common -c "$out/probe.c" -o "$out/$name-probe.o"
  set -- $($sizetool "$out/$name.o" | tail -n 1)
  text=$1 data=$2 bss=$3
  flash=$((text + data))
  ctx=$((0x$($nmtool -S "$out/$name-probe.o" | awk '/eb_size_probe/ {print $2}')))
  echo "SIZE $name text=$text data=$data bss=$bss flash=$flash budget=$budget"
  echo "CONTEXT $name bytes=$ctx"
  if [ "$budget" != "-" ] && [ "$flash" -gt "$budget" ]; then
    echo "FAIL: $name flash $flash bytes is over the budget of $budget bytes" >&2
    fail=1
  fi
  case $name in arm-*)
    if [ "$ctx" -gt "$CONTEXT_BUDGET" ]; then
      echo "FAIL: $name eb_client is $ctx bytes, budget $CONTEXT_BUDGET" >&2
      fail=1
    fi;;
  esac
}

report arm-m4-mqtt311 "$ARM_CC" "$ARM_FLAGS" arm-none-eabi-size arm-none-eabi-nm "$FLASH_BUDGET"
report arm-m4-mqtt5 "$ARM_CC" "$ARM_FLAGS -DEB_MQTT5" arm-none-eabi-size arm-none-eabi-nm "$FLASH_BUDGET_V5"
# Host: no unwind tables, which are not code and which firmware builds leave out too.
report host-mqtt311 "$HOST_CC" "-std=c99 -Os -DNDEBUG -ffunction-sections -fno-asynchronous-unwind-tables -Iinclude" size nm -

echo
echo "arm-none-eabi-size (Cortex-M4, -Os, MQTT 3.1.1):"
arm-none-eabi-size "$out/arm-m4-mqtt311.o"
exit $fail
