#!/usr/bin/env bash
# Report which dma-buf capabilities the running kernel offers, one line each:
#   udmabuf yes|no / dma_heap_system yes|no / vgem yes|no [card path] / sync_file yes|no
# Meant for inside the VM (scripts/vm/run.sh -- bash scripts/vm/probe.sh) but harmless anywhere.
# Always exits 0: it reports, it does not judge.
set -euo pipefail

# A device node is "usable" when it is a char device we can open read-write (root in the VM;
# elsewhere permissions may say no even though the driver is there).
usable_chardev() {
    [[ -c "$1" ]] || return 1
    { exec 3<>"$1"; } 2>/dev/null || return 1
    exec 3>&-
}

echo "kernel $(uname -r)"

if usable_chardev /dev/udmabuf; then
    limit="$(cat /sys/module/udmabuf/parameters/size_limit_mb 2>/dev/null || echo '?')"
    echo "udmabuf yes (size_limit_mb=$limit)"
else
    echo "udmabuf no"
fi

if usable_chardev /dev/dma_heap/system; then echo "dma_heap_system yes"; else echo "dma_heap_system no"; fi

# vgem registers a DRM device on a platform device named "vgem" (with no driver bound to it);
# debugfs, when mounted, also names the driver. Report the primary node: dumb-buffer creation
# works only there (the render node answers EACCES).
is_vgem() { # /sys/class/drm/cardN
    local minor
    [[ "$(basename "$(readlink -f "$1/device")")" == vgem ]] && return 0
    minor="${1##*/card}"
    [[ "$(cat "/sys/kernel/debug/dri/$minor/name" 2>/dev/null)" == vgem* ]]
}
vgem_card=""
for card in /sys/class/drm/card[0-9]*; do
    if [[ ! -e "$card" ]] || ! is_vgem "$card"; then continue; fi
    if usable_chardev "/dev/dri/${card##*/}"; then
        vgem_card="/dev/dri/${card##*/}"
        break
    fi
done
if [[ -n "$vgem_card" ]]; then echo "vgem yes $vgem_card"; else echo "vgem no"; fi

# sync_file has no device node: it is built in or not. The kernel's symbol table answers for the
# running kernel; the kernel config (when run.sh names it) is the fallback.
if grep -qw sync_file_create /proc/kallsyms 2>/dev/null; then
    echo "sync_file yes"
elif [[ -n "${SURFACELINK_VM_KERNEL_CONFIG:-}" ]] && grep -qx 'CONFIG_SYNC_FILE=y' "$SURFACELINK_VM_KERNEL_CONFIG" 2>/dev/null; then
    echo "sync_file yes (config)"
else
    echo "sync_file no"
fi
exit 0
