# Windows x64 cross build with mingw-w64 (Debian: g++-mingw-w64-x86-64-posix).
# The -posix compilers, not the default -win32 ones: GCC's win32 thread model has no
# std::mutex, which node-addon-api's napi.h uses. CMakeLists.txt's MINGW branch makes the
# NODE.EXE import library with dlltool and links -static (no libstdc++/libgcc/winpthread DLLs).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(SL_MINGW_PREFIX x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${SL_MINGW_PREFIX}-gcc-posix)
set(CMAKE_CXX_COMPILER ${SL_MINGW_PREFIX}-g++-posix)
set(CMAKE_RC_COMPILER ${SL_MINGW_PREFIX}-windres)
set(SL_DLLTOOL ${SL_MINGW_PREFIX}-dlltool CACHE FILEPATH "dlltool for the NODE.EXE import library")
set(CMAKE_FIND_ROOT_PATH /usr/${SL_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
