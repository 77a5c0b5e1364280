# Shared part of the Zig cross toolchains (cmake/zig-linux.cmake, cmake/zig-macos.cmake).
# Zig is one binary that carries clang, lld, libc++ and the libc headers/stubs of every
# target, so the same Linux x86-64 machine builds Linux arm64 and macOS addons.
#
# Environment (configure AND build): ZIG = the zig binary, ZIG_TARGET = a Zig target triple
# such as x86_64-linux-gnu.2.28 or aarch64-macos.11.0. scripts/prebuild.sh sets both, and
# ZIG_GLOBAL_CACHE_DIR so the libc++ Zig compiles once per target is reused.
if(NOT DEFINED ENV{ZIG} OR NOT DEFINED ENV{ZIG_TARGET})
  message(FATAL_ERROR "surfacelink: the Zig toolchain needs ZIG and ZIG_TARGET in the environment "
                      "(use scripts/prebuild.sh)")
endif()
string(REGEX MATCH "^[^-]+" SL_ZIG_ARCH "$ENV{ZIG_TARGET}")
set(CMAKE_SYSTEM_PROCESSOR ${SL_ZIG_ARCH})

set(SL_ZIG_WRAPPERS ${CMAKE_CURRENT_LIST_DIR}/zig)
set(CMAKE_C_COMPILER ${SL_ZIG_WRAPPERS}/cc)
set(CMAKE_CXX_COMPILER ${SL_ZIG_WRAPPERS}/c++)
set(CMAKE_AR ${SL_ZIG_WRAPPERS}/ar CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB ${SL_ZIG_WRAPPERS}/ranlib CACHE FILEPATH "zig ranlib")

# CMake's compiler checks compile a static library instead of linking a program: linking makes
# Zig build libc++ for the check's flags (debug, unstripped), a second full libc++ build beside
# the one the addon's own link needs — minutes per target on a cold cache.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

# Nothing from the build machine's /usr/include or /usr/lib: Zig brings the target's libc.
# Programs (node, dlltool…) are the build machine's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
