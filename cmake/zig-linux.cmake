# Linux cross/portable build with Zig: ZIG_TARGET=x86_64-linux-gnu.2.28 or aarch64-linux-gnu.2.28.
# The ".2.28" pins the glibc symbol versions the addon may use to those of glibc 2.28 (the
# floor of the official Node 20 Linux builds), and Zig links its own libc++ statically, so
# the addon needs no libstdc++ from the system. See scripts/prebuild.sh.
set(CMAKE_SYSTEM_NAME Linux)
include(${CMAKE_CURRENT_LIST_DIR}/zig-common.cmake)
