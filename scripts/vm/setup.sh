#!/usr/bin/env bash
# Prepare everything scripts/vm/run.sh needs to boot a throw-away dma-buf test VM:
#   * host packages (QEMU, a static busybox for the initramfs, cpio, decompressors),
#   * a Debian 6.12 kernel (the 6.1 default kernel lacks udmabuf and dma-heaps), unpacked into a
#     versioned cache dir: vmlinuz, config, and the few modules the guest needs, decompressed.
#
# Idempotent and safe to run in parallel (serialised with flock). When everything is cached it
# prints nothing on stderr and only the kernel cache dir on stdout, which is how run.sh finds it.
# Progress and errors go to stderr. Network is needed only for apt (first run / new kernel).
#
# Env: SURFACELINK_VM_CACHE  cache root (default $HOME/.cache/surfacelink/vm)
#      SURFACELINK_VM_KERNEL_PKG  meta package to resolve (default linux-image-6.12-amd64)
set -euo pipefail

CACHE_ROOT="${SURFACELINK_VM_CACHE:-$HOME/.cache/surfacelink/vm}"
META_PKG="${SURFACELINK_VM_KERNEL_PKG:-linux-image-6.12-amd64}"
HOST_PKGS=(qemu-system-x86 busybox-static cpio xz-utils zstd)
# Wanted modules in load order. virtio_pci/virtio_console are built in on 6.12 (and then skipped),
# but listing them keeps kernels that build them as modules (e.g. 6.1) bootable.
WANTED_MODULES=(virtio_pci virtio_console netfs 9pnet 9pnet_virtio 9p drm drm_kms_helper drm_shmem_helper vgem)
# Options the tests rely on; checked so that a wrong kernel fails here, not deep inside a test.
REQUIRED_CONFIG=(CONFIG_UDMABUF=y CONFIG_DMABUF_HEAPS_SYSTEM=y CONFIG_SYNC_FILE=y)

# Bump when the cache dir layout changes, so older caches are rebuilt instead of half-used.
CACHE_LAYOUT=2

log() { printf 'vm-setup: %s\n' "$*" >&2; }
die() { printf 'vm-setup: error: %s\n' "$*" >&2; exit 1; }

# apt refuses to run concurrently; wait for another apt/dpkg instead of failing at once.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root, or install the packages yourself)"
    fi
}

# Run a command quietly: its output goes to a log that is shown only when it fails, so a
# normal setup prints just our progress lines.
quiet() {
    local log_file rc=0
    log_file="$(mktemp)"
    "$@" >"$log_file" 2>&1 || rc=$?
    if ((rc)); then
        tail -n 30 "$log_file" >&2
    fi
    rm -f -- "$log_file"
    return "$rc"
}

apt_updated=0
work=""
# apt-get update; returns non-zero (after showing apt's output) when it fails.
apt_update() {
    ((apt_updated)) && return 0
    log "apt-get update"
    local out try
    out="$(mktemp)"
    # DPkg::Lock::Timeout does not cover the lists lock, so wait for another apt-get update here
    # (up to 5 min); other failures (offline, broken sources) are reported at once.
    for try in $(seq 60); do
        if as_root env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" -q update >"$out" 2>&1; then
            apt_updated=1
            rm -f -- "$out"
            return 0
        fi
        grep -q 'Could not get lock' "$out" || break
        ((try % 6 == 1)) && log "apt lists are locked by another apt; waiting"
        sleep 5
    done
    tail -n 20 "$out" >&2
    rm -f -- "$out"
    return 1
}

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

ensure_host_packages() {
    local missing=() p
    for p in "${HOST_PKGS[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    apt_update || die "apt-get update failed; cannot install ${missing[*]}"
    log "installing ${missing[*]}"
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" -q -y \
        --no-install-recommends install "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
}

# Print the exact kernel package the meta package points to (e.g. linux-image-6.12.117+deb12-amd64),
# or nothing when apt does not know the meta package.
resolve_kernel_pkg() {
    apt-cache depends "$META_PKG" 2>/dev/null |
        sed -n 's/^ *Depends: *\(linux-image-[^ <>]*\).*$/\1/p' | head -n 1
}

# apt-cache takes ~0.7 s (this apt keeps no pkgcache.bin), which would be most of a cached run.
# Remember its answer, keyed on the meta package and the state of apt's package lists.
resolve_kernel_pkg_cached() {
    local stamp memo="$CACHE_ROOT/.resolved" pkg
    stamp="$META_PKG $(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | cksum)"
    if [[ -f "$memo" && "$(head -n 1 "$memo")" == "$stamp" ]]; then
        sed -n 2p "$memo"
        return 0
    fi
    pkg="$(resolve_kernel_pkg)"
    if [[ -n "$pkg" ]]; then
        printf '%s\n%s\n' "$stamp" "$pkg" >"$memo"
    fi
    printf '%s\n' "$pkg"
}

is_complete() { [[ -f "$1/.complete" && "$(<"$1/.complete")" == "$CACHE_LAYOUT" ]]; }

# Newest fully unpacked kernel in the cache (used when apt cannot resolve or fetch: offline runs).
newest_cached() {
    local d
    for d in "$CACHE_ROOT"/*/; do
        if is_complete "$d"; then printf '%s\n' "${d%/}"; fi
    done | sort -V | tail -n 1 # sort -V: 6.12.10 is newer than 6.12.9
}

# Module metadata lives in the .ko's .modinfo section as NUL-separated key=value strings.
# Reading it directly avoids needing kmod's modinfo (not installed on minimal hosts).
ko_depends() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=\([A-Za-z0-9_,-]*\)$/\1/p' | head -n 1 | tr ',' ' '
}

decompress_ko() { # src dst
    case "$1" in
    *.ko.xz) xz -dc -- "$1" >"$2" ;;
    *.ko.zst) zstd -qdc -- "$1" >"$2" ;;
    *.ko.gz) gzip -dc -- "$1" >"$2" ;;
    *.ko) cp -- "$1" "$2" ;;
    *) die "unknown module format: $1" ;;
    esac
}

# Depth-first: dependencies are emitted before the module, giving a valid insmod order.
# Uses unpack_kernel's locals: ko_path, state, order, builtin_list, out, kver.
add_module() {
    local m="${1//-/_}" dep
    [[ "${state[$m]:-}" == 2 ]] && return 0
    [[ "${state[$m]:-}" == 1 ]] && die "module dependency cycle at $m"
    if grep -qx -- "$m" "$builtin_list"; then
        state[$m]=2
        return 0
    fi
    [[ -n "${ko_path[$m]:-}" ]] || die "module $m is neither built in nor shipped in $kver"
    state[$m]=1
    decompress_ko "${ko_path[$m]}" "$out/modules/$m.ko"
    for dep in $(ko_depends "$out/modules/$m.ko"); do
        add_module "$dep"
    done
    state[$m]=2
    order+=("$m")
}

# Extract the uncompressed ELF kernel from a bzImage. QEMU boots it through its PVH entry point,
# which skips the in-guest decompressor: about 0.8 s less per VM under TCG. The boot protocol
# header says where the compressed payload is; kbuild appends the 4-byte decompressed size to it.
extract_vmlinux() { # bzImage out
    local img="$1" dst="$2" sects off len magic
    sects=$(od -An -tu1 -j 497 -N 1 "$img" | tr -d ' ')
    ((sects)) || sects=4 # boot protocol: 0 means 4
    off=$(((sects + 1) * 512 + $(od -An -tu4 -j $((0x248)) -N 4 "$img" | tr -d ' ')))
    len=$(($(od -An -tu4 -j $((0x24c)) -N 4 "$img" | tr -d ' ') - 4))
    ((len > 0)) || return 1
    magic=$(od -An -tx1 -j "$off" -N 4 "$img" | tr -d ' ')
    payload() { dd if="$img" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none; }
    case "$magic" in
    28b52ffd) payload | zstd -qdc >"$dst" ;;
    fd377a58) payload | xz -dc >"$dst" ;;
    1f8b*) payload | gzip -dc >"$dst" ;;
    *) return 1 ;;
    esac || return 1
    [[ "$(od -An -tx1 -N 4 "$dst" | tr -d ' ')" == 7f454c46 ]] # ELF
}

# Unpack <deb> into <final dir>. Works in a sibling temp dir and renames at the end, so a crash
# never leaves a half-filled dir that looks complete.
unpack_kernel() {
    local deb="$1" kver="$2" final="$3" work="$4"
    local root="$work/root" out="$work/out"
    mkdir -p "$root" "$out/modules"

    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$root"
    rm -f -- "$deb" # 100+ MB; no longer needed

    local moddir=""
    for moddir in "$root/lib/modules/$kver" "$root/usr/lib/modules/$kver"; do
        [[ -d "$moddir" ]] && break
    done
    [[ -d "$moddir" ]] || die "no lib/modules/$kver in the kernel package"
    local bootdir="$root/boot"
    [[ -f "$bootdir/vmlinuz-$kver" ]] || die "no boot/vmlinuz-$kver in the kernel package"
    [[ -f "$bootdir/config-$kver" ]] || die "no boot/config-$kver in the kernel package"
    cp -- "$bootdir/vmlinuz-$kver" "$out/vmlinuz"
    cp -- "$bootdir/config-$kver" "$out/config"
    # Optional speed-up; run.sh falls back to vmlinuz when vmlinux is absent.
    if grep -qx 'CONFIG_PVH=y' "$out/config" && extract_vmlinux "$out/vmlinuz" "$out/vmlinux"; then
        log "extracted vmlinux for PVH boot"
    else
        log "warning: could not extract vmlinux; VMs will boot the compressed kernel (slower)"
        rm -f -- "$out/vmlinux"
    fi

    local opt
    for opt in "${REQUIRED_CONFIG[@]}"; do
        grep -qx -- "$opt" "$out/config" || die "kernel $kver lacks $opt"
    done

    # Built-in drivers: modules.builtin.modinfo has "<name>.<key>=<value>" NUL-separated entries;
    # unlike modules.builtin it also lists bool drivers such as udmabuf.
    local builtin_list="$work/builtin"
    if [[ -f "$moddir/modules.builtin.modinfo" ]]; then
        tr '\0' '\n' <"$moddir/modules.builtin.modinfo" | sed -n 's/^\([^.=]*\)\..*$/\1/p' | tr '-' '_' | sort -u >"$builtin_list"
    else
        : >"$builtin_list"
    fi
    if [[ -f "$moddir/modules.builtin" ]]; then
        sed 's|.*/||; s|\.ko.*$||' "$moddir/modules.builtin" | tr '-' '_' >>"$builtin_list"
    fi

    # Map module name (dashes normalised to underscores, as the kernel does) -> file.
    declare -A ko_path=()
    local f name
    while IFS= read -r -d '' f; do
        name="${f##*/}"
        name="${name%%.ko*}"
        ko_path["${name//-/_}"]="$f"
    done < <(find "$moddir/kernel" -name '*.ko*' -print0)

    # Resolve WANTED_MODULES plus their dependencies (add_module reads/extends these via bash's
    # dynamic scoping).
    declare -A state=() # 1 = in progress, 2 = done
    local order=()
    local m
    for m in "${WANTED_MODULES[@]}"; do
        add_module "$m"
    done
    printf '%s\n' "${order[@]}" >"$out/modules/load-order"
    log "modules (load order): ${order[*]}"

    printf '%s\n' "$kver" >"$out/kernel-version"
    echo "$CACHE_LAYOUT" >"$out/.complete"
    rm -rf -- "$final"
    mv -- "$out" "$final"
    rm -rf -- "$work"
}

main() {
    mkdir -p "$CACHE_ROOT"
    # One setup at a time per cache: parallel test jobs must not download/unpack twice or see
    # half-written files. The lock is released when this process exits.
    exec {lock_fd}>"$CACHE_ROOT/.lock"
    # Cached runs hold it for ~0.1 s, so only say something when the wait is a real one.
    if ! flock -w 3 "$lock_fd"; then
        log "waiting for another setup to finish (lock $CACHE_ROOT/.lock)"
        flock "$lock_fd"
    fi

    # Under the lock no other build runs, so any .build.* dir is debris from a killed setup.
    rm -rf -- "$CACHE_ROOT"/.build.*

    ensure_host_packages

    local pkg cached
    pkg="$(resolve_kernel_pkg_cached)"
    cached="$(newest_cached)"
    if [[ -z "$pkg" ]]; then
        if [[ -n "$cached" ]]; then
            # Offline or lists cleaned: a previously unpacked kernel is good enough.
            log "note: apt cannot resolve $META_PKG; using cached $(basename "$cached")"
            printf '%s\n' "$cached"
            return 0
        fi
        command -v apt-get >/dev/null || die "no apt-get and no cached kernel in $CACHE_ROOT"
        apt_update || die "apt-get update failed and no kernel is cached in $CACHE_ROOT"
        pkg="$(resolve_kernel_pkg_cached)"
        [[ -n "$pkg" ]] || die "apt does not know $META_PKG (is bookworm-security in the apt sources?)"
    fi

    local kver="${pkg#linux-image-}"
    local final="$CACHE_ROOT/$kver"
    if is_complete "$final"; then
        printf '%s\n' "$final"
        return 0
    fi

    work="$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")" # global: the EXIT trap runs after main returns
    # Remove the partial build on any failure; on success unpack_kernel already removed it.
    trap '[[ -z "$work" ]] || rm -rf -- "$work"' EXIT

    log "downloading $pkg (about 100 MB)"
    # The sandbox user (_apt) cannot write into root's cache dir; download as the caller.
    if ! (cd "$work" && quiet apt-get -o APT::Sandbox::User="$(id -un)" -q download "$pkg"); then
        # Lists may be stale (the exact version was superseded); refresh once and retry.
        # Offline, fall back to a kernel unpacked earlier.
        if apt_update && pkg="$(resolve_kernel_pkg_cached)" && [[ -n "$pkg" ]] &&
            (cd "$work" && quiet apt-get -o APT::Sandbox::User="$(id -un)" -q download "$pkg"); then
            kver="${pkg#linux-image-}"
            final="$CACHE_ROOT/$kver"
        elif [[ -n "$cached" ]]; then
            log "warning: could not download $pkg; using cached $(basename "$cached")"
            printf '%s\n' "$cached"
            return 0
        else
            die "could not download $pkg"
        fi
    fi
    local deb
    deb="$(find "$work" -maxdepth 1 -name '*.deb' -print -quit)"
    [[ -n "$deb" ]] || die "apt-get download produced no .deb"

    unpack_kernel "$deb" "$kver" "$final" "$work"
    log "kernel $kver ready in $final ($(du -sh "$final" | cut -f1))"
    printf '%s\n' "$final"
}

# Turn signals into a normal exit so the EXIT trap removes a partial download.
trap 'exit 130' INT
trap 'exit 143' TERM
main "$@"
