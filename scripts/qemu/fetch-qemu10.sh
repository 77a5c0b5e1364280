#!/usr/bin/env bash
# Fetch QEMU 10.0 from Debian's bookworm-backports and unpack it (dpkg -x) into a cache
# directory, without installing it and without touching the system's apt configuration
# or state: a private source list, lists dir and cache dir under the work dir.
#
#   scripts/qemu/fetch-qemu10.sh            # prints the unpacked root on its last line
#
# Result: $ROOT/usr/bin/qemu-system-x86_64, run as
#   QEMU_MODULE_DIR=$ROOT/usr/lib/x86_64-linux-gnu/qemu $ROOT/usr/bin/qemu-system-x86_64 \
#     -L $ROOT/usr/share/qemu -L /usr/share/seabios ...
# (test/qemu/qemu.ts does exactly that). Needs a bookworm machine with Debian's QEMU 7.2
# installed (its shared-library dependencies are then all present), apt-get, dpkg and
# debian-archive-keyring. Root is not needed.
#
# Idempotent: once unpacked (a .complete stamp naming the version), it only prints the root.
# Every .deb's SHA-256 is pinned below: apt already checks the archive's signatures, the pins
# make a silent rebuild of the same version visible. If Debian replaces the version, update
# VERSION and the pins together (`apt-cache show` on the private lists prints both).
#
# Environment: SURFACELINK_QEMU10_DIR (the unpack root), XDG_CACHE_HOME, SURFACELINK_DEBIAN_MIRROR
# (default: the system's bookworm mirror, else http://deb.debian.org/debian).
set -euo pipefail

VERSION='1:10.0.2+ds-2+deb13u1~bpo12+1'
# package name, SHA-256 of its .deb (checked against the bookworm-backports Packages index)
PINS=(
  qemu-system-x86 4a6b1856c8b0d7df4ff8e70249e12c473ccf8d516aadb4ae14d3d938faed0c65
  qemu-system-common 23a4672a138832d7173855e981aa8282c73ef5e04e080fa7ada9f82c6b34f507
  qemu-system-data 2d831088187087013b3fcbd19bdfb955b182a2d5a08f6dafa0ad1c6d2007fb4e
  # in 10.0 ui-dbus.so lives here; without it: "Display 'dbus' is not available"
  qemu-system-modules-opengl 1649429821d787acf8377eb52685390adabadad239f80acf7c7f40bf09536289
)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

UPSTREAM_VERSION="${VERSION#*:}"
UPSTREAM_VERSION="${UPSTREAM_VERSION%%+*}" # 10.0.2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/surfacelink-build"
ROOT="${SURFACELINK_QEMU10_DIR:-$CACHE/qemu-$UPSTREAM_VERSION}"

log() { printf 'fetch-qemu10: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

if [[ -f "$ROOT/.complete" && "$(cat "$ROOT/.complete")" == "$VERSION" && -x "$ROOT/usr/bin/qemu-system-x86_64" ]]; then
  log "already unpacked: QEMU $VERSION in $ROOT"
  echo "$ROOT"
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (a Debian 12 machine is expected)"
command -v dpkg >/dev/null || die "dpkg not found"
command -v sha256sum >/dev/null || die "sha256sum not found"
[[ -r "$KEYRING" ]] || die "$KEYRING missing: install debian-archive-keyring"

# The mirror: the URI of the system's bookworm entry (deb822 or one-line format).
mirror="${SURFACELINK_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(awk '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
    /^deb[ \t]/ { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i + 1) == "bookworm") { print $i; exit } }
  ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

mkdir -p "$CACHE"
# One fetch at a time (parallel test runs): wait for the lock, then look again.
exec 9>"$CACHE/qemu10-fetch.lock"
flock 9
if [[ -f "$ROOT/.complete" && "$(cat "$ROOT/.complete")" == "$VERSION" && -x "$ROOT/usr/bin/qemu-system-x86_64" ]]; then
  log "already unpacked (by a parallel run): QEMU $VERSION in $ROOT"
  echo "$ROOT"
  exit 0
fi
work="$(mktemp -d "$CACHE/qemu10-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources" "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
cat >"$work/sources/bookworm-backports.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: $KEYRING
SOURCES
APT=(
  -o Dir::Etc::sourcelist=/dev/null
  -o Dir::Etc::sourceparts="$work/sources"
  -o Dir::State::Lists="$work/lists"
  -o Dir::Cache="$work/cache"
  -o Debug::NoLocking=1
  -o APT::Architecture=amd64
)
# As root apt downloads as user _apt, who cannot enter a cache under /root: download as root.
[[ $EUID -ne 0 ]] || APT+=(-o APT::Sandbox::User=root)

started=$SECONDS
log "apt-get update (private: $mirror bookworm-backports, lists in $work)"
apt-get "${APT[@]}" -qq update || die "apt-get update of bookworm-backports failed"

specs=()
for ((i = 0; i < ${#PINS[@]}; i += 2)); do specs+=("${PINS[i]}=$VERSION"); done
log "apt-get download ${specs[*]}"
if ! (cd "$work/debs" && apt-get "${APT[@]}" -qq download "${specs[@]}"); then
  log "version $VERSION not (or not all) available; bookworm-backports has:"
  for ((i = 0; i < ${#PINS[@]}; i += 2)); do
    apt-cache "${APT[@]}" madison "${PINS[i]}" 2>/dev/null | grep -i backports >&2 || log "  ${PINS[i]}: none"
  done
  die "update VERSION and the SHA-256 pins in $0"
fi

bytes=0
for ((i = 0; i < ${#PINS[@]}; i += 2)); do
  name="${PINS[i]}"
  deb="$(ls "$work/debs/${name}_"*.deb)"
  sum="$(sha256sum "$deb" | cut -d' ' -f1)"
  [[ "$sum" == "${PINS[i + 1]}" ]] || die "$(basename "$deb"): SHA-256 $sum, pinned ${PINS[i + 1]}"
  bytes=$((bytes + $(stat -c %s "$deb")))
done
log "downloaded and verified 4 packages, $((bytes / 1024)) KiB, in $((SECONDS - started)) s"

# Unpack beside the target, then move it into place: an interrupted run leaves no half tree.
unpacked="$work/root"
mkdir -p "$unpacked"
for deb in "$work/debs"/*.deb; do
  log "dpkg -x $(basename "$deb")"
  dpkg -x "$deb" "$unpacked"
done
[[ -x "$unpacked/usr/bin/qemu-system-x86_64" ]] || die "no usr/bin/qemu-system-x86_64 in the packages"
[[ -f "$unpacked/usr/lib/x86_64-linux-gnu/qemu/ui-dbus.so" ]] || die "no ui-dbus.so in the packages"
printf '%s\n' "$VERSION" >"$unpacked/.complete"
rm -rf "$ROOT"
mkdir -p "$(dirname "$ROOT")"
mv "$unpacked" "$ROOT"
version_line="$("$ROOT/usr/bin/qemu-system-x86_64" --version | head -1)"
log "QEMU $VERSION unpacked in $ROOT ($((SECONDS - started)) s): $version_line"
echo "$ROOT"
