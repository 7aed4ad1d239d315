#!/usr/bin/env bash
# ARM cost proxy: guest instructions per tile inference under qemu-user, for
# the Raspberry Pi 4's Cortex-A72 (ARMv8.0, no fp16 arithmetic) and the Pi 5's
# Cortex-A76 (ARMv8.2, fp16), in f32 and in f16 (`model::Precision::F16`,
# not offered on the command line: see src/model.rs).
#
# Instructions are counted by qemu's own `insn` plugin (tests/plugin/insn.c),
# compiled here from Debian's qemu source, so the count matches the installed
# qemu-aarch64. One inference = (count with 4 repeats - count with 1) / 3, so
# model loading and start-up cancel out. Counts are a proxy for cost, not a
# time: a NEON f16 instruction does twice the lanes of an f32 one, but memory
# stalls and issue width are not modelled.
#
# tract picks its kernels from /proc/cpuinfo, which qemu-user 7.2 does not
# emulate for aarch64 guests: the guest reads the x86 host's and would see no
# fp16. Each run therefore names the core to tract with TRACT_CPU_AARCH64_KIND:
# a72 for the Pi 4, and a75 for the Pi 5's Cortex-A76 (tract has no A76 entry;
# a75 is the ARMv8.2 core it knows, and what it enables for it, fp16 and dot
# products, is what a Pi 5's "asimdhp asimddp" features enable).
#
# Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libglib2.0-dev
# dpkg-dev, `rustup target add aarch64-unknown-linux-gnu`, and deb-src lines in
# apt's sources for `apt-get source` (or pass INSN_PLUGIN=path/to/libinsn.so).
#
# Usage: benches/arm_cost.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
plugin=${INSN_PLUGIN:-$target_dir/qemu-insn/libinsn.so}

if [ ! -f "$plugin" ]; then
  work=$target_dir/qemu-insn
  mkdir -p "$work"
  (cd "$work" && apt-get source --download-only qemu >/dev/null) || {
    echo "error: cannot fetch Debian's qemu source: add deb-src lines to apt's sources, or set INSN_PLUGIN" >&2
    exit 1
  }
  tarball=$(ls "$work"/qemu_*.orig.tar.xz | head -1)
  tar -xJf "$tarball" -C "$work" --wildcards '*/include/qemu/qemu-plugin.h' '*/tests/plugin/insn.c'
  src=$(ls -d "$work"/qemu-*/ | head -1)
  # shellcheck disable=SC2046
  gcc -O2 -shared -fPIC -I"$src/include/qemu" $(pkg-config --cflags glib-2.0) \
    "$src/tests/plugin/insn.c" -o "$plugin" $(pkg-config --libs glib-2.0)
fi

cargo build --release --target aarch64-unknown-linux-gnu --example tile_insns
bin=$target_dir/aarch64-unknown-linux-gnu/release/examples/tile_insns

count() { # cpu tract-kind precision repeats -> "instructions|scores"
  local out
  out=$(TRACT_CPU_AARCH64_KIND=$2 qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu \
    -plugin "$plugin",inline=on -d plugin "$bin" "$3" "$4" 2>&1)
  echo "$(grep -o 'insns: [0-9]*' <<<"$out" | grep -o '[0-9]*')|$(grep -o '"scores":\[[^]]*\]' <<<"$out")"
}

printf '%-12s %-5s %16s  %s\n' cpu float "insns/inference" scores
for run in "cortex-a72 a72 f32" "cortex-a72 a72 f16" "cortex-a76 a75 f32" "cortex-a76 a75 f16"; do
  read -r cpu kind precision <<<"$run"
  one=$(count "$cpu" "$kind" "$precision" 1)
  four=$(count "$cpu" "$kind" "$precision" 4)
  per=$(( (${four%%|*} - ${one%%|*}) / 3 ))
  printf '%-12s %-5s %16d  %s\n' "$cpu" "$precision" "$per" "${one#*|}"
done
