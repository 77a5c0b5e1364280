# macOS cross build with Zig: ZIG_TARGET=x86_64-macos.11.0 or aarch64-macos.11.0.
# Zig ships the macOS libc headers and a libSystem.tbd, no frameworks (facts: macos-cross.md);
# the addon links libSystem only and resolves Node-API from node at load time
# (-undefined dynamic_lookup, set in CMakeLists.txt). See scripts/prebuild.sh.
set(CMAKE_SYSTEM_NAME Darwin)
include(${CMAKE_CURRENT_LIST_DIR}/zig-common.cmake)
# No Xcode SDK, no universal binaries: one architecture per build, chosen by ZIG_TARGET.
set(CMAKE_OSX_SYSROOT "" CACHE PATH "" FORCE)
set(CMAKE_OSX_ARCHITECTURES "" CACHE STRING "" FORCE)
set(CMAKE_OSX_DEPLOYMENT_TARGET "" CACHE STRING "" FORCE)
