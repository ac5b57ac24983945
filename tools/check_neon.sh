#!/usr/bin/env bash
# Checks the AArch64 NEON dot products on any Linux host: cross-compiles tools/neon_check.cpp
# with the kernels it compares (vec_dot_neon.cpp vs vec_dot_scalar.cpp) for baseline ARMv8-A
# and runs it under qemu user-mode emulation as a Cortex-A57 (no dotprod, so an instruction
# beyond the baseline would fault). No Python or nanobind involved.
#
# usage: tools/check_neon.sh [seed]
# needs: aarch64-linux-gnu-g++ and qemu-aarch64 (Debian / Ubuntu:
#        sudo apt-get install g++-aarch64-linux-gnu qemu-user)
set -euo pipefail

readonly CXX=aarch64-linux-gnu-g++
readonly QEMU=qemu-aarch64
readonly SYSROOT=/usr/aarch64-linux-gnu
readonly QEMU_CPU=cortex-a57

missing=()
command -v "$CXX" >/dev/null || missing+=("$CXX (package g++-aarch64-linux-gnu)")
command -v "$QEMU" >/dev/null || missing+=("$QEMU (package qemu-user)")
if ((${#missing[@]})); then
    echo "check_neon.sh: not found: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install g++-aarch64-linux-gnu qemu-user" >&2
    exit 2
fi
if [[ ! -d $SYSROOT ]]; then
    echo "check_neon.sh: no AArch64 libraries in $SYSROOT;" \
         "install them with: sudo apt-get install g++-aarch64-linux-gnu" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/kernels/cpp
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

"$CXX" -O2 -std=c++17 -march=armv8-a -Wall -Wextra -I"$src" \
    "$root/tools/neon_check.cpp" \
    "$src/vec_dot_neon.cpp" "$src/vec_dot_scalar.cpp" "$src/act_quant.cpp" "$src/quant_formats.cpp" \
    -o "$build/neon_check"

"$QEMU" -cpu "$QEMU_CPU" -L "$SYSROOT" "$build/neon_check" "$@"
