#!/usr/bin/env bash
# Cheap check (no boot, no network, no install) whether scripts/vm/run.sh can work on this machine.
# Exit 0 when it can (possibly after setup.sh installs packages / downloads the kernel);
# otherwise exit 1 and print the reason on one line. Test suites use it to skip VM tests.
set -euo pipefail

CACHE_ROOT="${SURFACELINK_VM_CACHE:-$HOME/.cache/surfacelink/vm}"
META_PKG="${SURFACELINK_VM_KERNEL_PKG:-linux-image-6.12-amd64}"

no() {
    echo "vm unavailable: $*"
    exit 1
}

[[ "$(uname -s)" == Linux ]] || no "not Linux"
[[ "$(uname -m)" == x86_64 ]] || no "host is $(uname -m), the VM kernel is x86-64"

# Missing packages are fine as long as setup.sh can install them: apt-get plus root (or sudo).
can_install() {
    command -v apt-get >/dev/null || return 1
    [[ $EUID -eq 0 ]] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }
}
for tool in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio xz:xz-utils zstd:zstd; do
    if ! command -v "${tool%%:*}" >/dev/null && ! can_install; then
        no "${tool%%:*} missing and cannot be installed (need apt-get and root): install ${tool#*:}"
    fi
done

# The kernel: an unpacked cache is enough (works offline). Otherwise apt must be able to find the
# package: known to apt already, or a Debian 12 host, whose default sources have bookworm-security
# (setup.sh runs apt-get update when the lists lack it).
kernel_cached=0
for d in "$CACHE_ROOT"/*/; do
    if [[ -f "$d.complete" && -f "$d/modules/load-order" ]]; then kernel_cached=1; fi
done
if ((!kernel_cached)); then
    command -v apt-get >/dev/null || no "no kernel in $CACHE_ROOT and no apt-get to fetch $META_PKG"
    codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
    if [[ "$codename" != bookworm ]] && ! apt-cache show "$META_PKG" >/dev/null 2>&1; then
        no "no kernel in $CACHE_ROOT and apt does not know $META_PKG (not Debian 12?)"
    fi
fi

# The working directory is shared at its own path; / cannot be.
[[ "$(pwd -P)" != / ]] || no "run from a directory other than /"
exit 0
