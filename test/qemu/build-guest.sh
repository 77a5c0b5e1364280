#!/usr/bin/env bash
# Build the QEMU test guest (test/qemu/guest/testkern.c) into a multiboot ELF:
#
#   test/qemu/build-guest.sh [OUT_DIR]      # prints the ELF's path on its last line
#
# OUT_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/surfacelink-build/testkern. The output is named
# after a hash of the sources, this script and the compiler version, so an unchanged guest is
# not rebuilt. Needs only gcc (Debian's gcc 12 builds -m32 -ffreestanding code without any
# i386 libc or multilib package: the guest uses gcc's own <stdint.h> and no libgcc).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/guest"
out_dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/surfacelink-build/testkern}"
CC="${CC:-gcc}"

command -v "$CC" >/dev/null || {
  echo "build-guest: $CC not found (install gcc)" >&2
  exit 1
}
hash="$({
  cat "$src/testkern.c" "$src/link.ld" "$0"
  "$CC" --version | head -1
} | sha256sum | cut -c1-16)"
elf="$out_dir/testkern-$hash.elf"
if [[ -f "$elf" ]]; then
  echo "$elf"
  exit 0
fi
mkdir -p "$out_dir"
tmp="$(mktemp "$out_dir/.testkern.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$CC" -m32 -march=i686 -O2 -std=gnu11 -Wall -Wextra -Werror \
  -ffreestanding -fno-pic -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin \
  -nostdlib -static -no-pie \
  -Wl,-m,elf_i386,-T,"$src/link.ld",--build-id=none,-z,noexecstack,--no-warn-rwx-segments \
  -o "$tmp" "$src/testkern.c"
mv "$tmp" "$elf"
trap - EXIT
echo "build-guest: built $elf ($(stat -c %s "$elf") bytes)" >&2
echo "$elf"
