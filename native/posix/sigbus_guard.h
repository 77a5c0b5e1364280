// The SIGBUS guard for shared memory whose size another process can change (a POSIX shm
// object on Linux: anyone holding a writable fd can ftruncate it). The technique Wayland
// compositors use for wl_shm pools: a SIGBUS inside a guarded mapping is answered by mapping
// anonymous zero pages over that whole mapping (MAP_FIXED), so the faulting access restarts and
// reads zeros instead of killing the process; the mapping is marked truncated, for the caller to
// notice later (mappingTruncated()) and drop the buffer.
//
// The registry is a fixed array of slots read by the signal handler with atomics only: no lock,
// no allocation, no libc call but mmap in the handler. The handler is installed once per
// process, on first use; a SIGBUS outside every guarded mapping goes to the handler that was
// there before (V8's WebAssembly trap handler on macOS), or, where that was the default action,
// is made to happen again with the default action restored (the process dies as it would have).
#pragma once

#include <cstddef>

namespace surfacelink {

// How many mappings can be guarded at once (per process).
constexpr int kSigbusGuardSlots = 4096;

// GuardMapping's failures.
constexpr int kGuardFull = -1;       // every slot is taken
constexpr int kGuardNoHandler = -2;  // sigaction failed (errno says why)

// Guards the mapping [base, base + length) (page-aligned, as mmap returned it); installs the
// handler on first use. Returns the slot (>= 0) or one of the failures above. Call it before the
// memory is handed to anyone who could read it.
int GuardMapping(void* base, size_t length);

// Stops guarding. Call it before munmap: once it returns no handler touches the range any more.
void UnguardMapping(int slot);

// The slot whose guarded mapping contains `address`, or -1.
int FindGuardedMapping(const void* address);

// True once a SIGBUS inside the slot's mapping replaced it with zero pages.
bool GuardedMappingTruncated(int slot);

}  // namespace surfacelink
